# midtrain — the everyday commands. `make demo` and `make test` work on a fresh machine with only
# the Rust toolchain; `make parity` also needs Python 3 + pip (it installs into .venv-parity/).

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
MIDTRAIN := $(TARGET_DIR)/debug/midtrain
CORPORA ?= ../shared/corpora
SHARED_MODELS ?= ../shared/models
ALL_CORPORA = $(foreach c,web wiki books code math instruct,$(CORPORA)/$(c).parquet)
# Real pre-trained tokenizers: SmolLM2's is fetched (with its model) into an ignored folder.
SMOLLM2 ?= .models/smollm2-135m
TINYSTORIES ?= ../shared/models/tinystories-656k

.PHONY: build demo test lint fmt bench fixtures tasks parity slurm-test cuda-check clean experiment-context experiment-schedules experiment-smollm2-quality experiment-smollm2-schedules experiment-smollm2-context

build:
	$(CARGO) build --bin midtrain

## demo: the whole flow on the committed fixtures
demo: build
	@echo "== prepare the fixture dumps: read, filter, score, dedup, tokenize (out/prepared/*)"
	$(MIDTRAIN) prepare fixtures/prepare.toml --force
	$(MIDTRAIN) inspect out/prepared/web
	$(MIDTRAIN) inspect out/prepared/books --json
	$(MIDTRAIN) verify out/prepared/math
	@echo "== plan and build an annealing mixture of the prepared datasets (out/mixture)"
	$(MIDTRAIN) mix plan mixtures/recipes/fixtures-anneal.toml
	$(MIDTRAIN) mix build mixtures/recipes/fixtures-anneal.toml --out out/mixture --force
	head -5 out/mixture/megatron_data_path.txt
	@echo "== audit the mixture (terminal table + out/mixture/audit.html)"
	$(MIDTRAIN) audit out/mixture --long-threshold 1000 --html out/mixture/audit.html
	@echo "== a mix shaped by sidecar columns: web quality buckets of its top 80%, instruct rehydrated by cluster size, chat and QA rendered"
	$(MIDTRAIN) mix build mixtures/recipes/fixtures-select.toml --out out/mixture-select --force
	$(MIDTRAIN) audit out/mixture-select --html out/mixture-select/audit.html
	$(MIDTRAIN) verify out/prepared/chat
	@echo "== anneal a tiny Llama on the mixture (CPU, 40 steps; checkpoints in HF layout) and report it"
	rm -rf out/run
	$(MIDTRAIN) train trainer/configs/fixtures-anneal.toml --out out/run --report
	$(MIDTRAIN) score out/run/checkpoints/step-00000040 --text "The cat sat on the mat." --tokenizer fixtures/tokenizer.json
	@echo "== evaluate the checkpoint on the fixture tasks (multiple choice, held-out perplexity)"
	$(MIDTRAIN) eval out/run/checkpoints/step-00000040 --tokenizer fixtures/tokenizer.json \
		--tasks fixtures/tasks/math_mc.toml fixtures/tasks/heldout_web.jsonl fixtures/tasks/heldout_code.jsonl \
		--samples out/run/eval-samples.jsonl
	@echo "== ablate two candidate mixes: anneal each, evaluate on the tasks, rank (out/ablate/report.html)"
	rm -rf out/ablate
	$(MIDTRAIN) ablate mixtures/ablations/fixtures.toml --out out/ablate
	$(MIDTRAIN) soup out/run/checkpoints/step-00000020 out/run/checkpoints/step-00000040 --out out/run/soup
	$(MIDTRAIN) rope out/run/soup/config.json --json | cut -c1-200
	@echo "== tokenize a dump as it is (no filtering)"
	$(MIDTRAIN) tokenize fixtures/dumps/instruct.parquet --tokenizer fixtures/tokenizer.json --out out/instruct-raw --force
	@echo "== a quality classifier trained on the fixtures (books+math vs web)"
	$(MIDTRAIN) quality train --positive fixtures/dumps/books.parquet --positive fixtures/dumps/math.parquet \
		--negative fixtures/dumps/web.parquet --out out/demo-quality.bin
	@echo "== inspect the fixture datasets (Megatron shards + manifest)"
	$(MIDTRAIN) inspect fixtures/shards/web
	$(MIDTRAIN) inspect fixtures/shards/math --json
	@echo "== first document of the web dataset, decoded"
	$(MIDTRAIN) inspect fixtures/shards/web --dump 1 --tokenizer fixtures/tokenizer.json | cut -c1-400
	@echo "== verify checksums against the manifests"
	$(MIDTRAIN) verify fixtures/shards/web
	$(MIDTRAIN) verify fixtures/shards/math

## test: unit tests, end-to-end tests of the binary, and the check that fixtures/ regenerates
## byte for byte (fixtures/generate/tests)
test:
	$(CARGO) test --workspace --no-fail-fast

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## slurm-test: `prepare --emit-slurm 3` of the fixtures on a real one-node Slurm (installs
## slurm-wlm and munge with apt-get if missing), compared with a one-process run; not in `make test`
slurm-test: build
	scripts/slurm/test.sh $(TARGET_DIR)/debug/midtrain

## cuda-check: build, clippy and start `--features cuda` without a GPU or the CUDA toolkit (the
## compiler and libraries from PyPI and Debian into .cuda-toolkit/); not in `make test`
cuda-check:
	bash scripts/cuda/check_build.sh

## bench: throughput benchmarks; numbers go to docs/benchmarks.md
bench: build
	$(CARGO) bench -p shards --bench shards
	$(CARGO) bench -p mixtures --features audit --bench audit -- 1000 100000
	for c in web code wiki; do for t in 1 2; do \
		RAYON_NUM_THREADS=$$t $(CARGO) bench -p pipeline --bench tokenize -- $(abspath $(CORPORA))/$$c.parquet \
			$(abspath fixtures/tokenizer.json) || exit 1; done; done
	$(MAKE) $(SMOLLM2)/tokenizer.json
	for c in web code wiki; do RAYON_NUM_THREADS=1 $(CARGO) bench -p pipeline --bench tokenize -- \
		$(abspath $(CORPORA))/$$c.parquet $(abspath $(SMOLLM2))/tokenizer.json || exit 1; done
	for c in web wiki; do RAYON_NUM_THREADS=1 $(CARGO) bench -p pipeline --bench tokenize -- \
		$(abspath $(CORPORA))/$$c.parquet $(abspath $(TINYSTORIES))/tokenizer.json '<|end_story|>' || exit 1; done
	$(CARGO) build --release --bin midtrain
	bash scripts/parity/setup_venv.sh datatrove
	.venv-parity/bin/python scripts/parity/datatrove_filters.py --bench --midtrain $(TARGET_DIR)/release/midtrain \
		--corpus $(CORPORA)/web.parquet $(CORPORA)/books.parquet $(CORPORA)/wiki.parquet
	.venv-parity/bin/python scripts/parity/datatrove_minhash.py $(CORPORA)/web.parquet $(CORPORA)/wiki.parquet \
		$(CORPORA)/books.parquet $(CORPORA)/code.parquet $(CORPORA)/math.parquet $(CORPORA)/instruct.parquet \
		--midtrain $(TARGET_DIR)/release/midtrain
	for c in web code wiki; do \
		.venv-parity/bin/python scripts/bench/datatrove_tokenize.py --tokenizer fixtures/tokenizer.json \
			--corpus $(CORPORA)/$$c.parquet --midtrain $(TARGET_DIR)/release/midtrain \
			--midtrain-arg=--special-tokens-in-text --midtrain-arg=keep || exit 1; done
	$(CARGO) bench -p pipeline --bench decontaminate -- $(abspath $(CORPORA))/web.parquet $(abspath $(CORPORA))/math.parquet
	.venv-parity/bin/python scripts/bench/decontamination.py --midtrain $(TARGET_DIR)/release/midtrain \
		--corpora $(CORPORA) --min-verbatim 0.98 --min-edited 0.90 --max-fp 0.001
	RAYON_NUM_THREADS=2 $(CARGO) bench -p trainer --bench train_step -- 4
	bash scripts/parity/setup_venv.sh transformers
	.venv-parity/bin/python scripts/bench/torch_train.py --midtrain $(MIDTRAIN) --threads 2 --steps 8
	$(MAKE) $(SMOLLM2)/model.safetensors
	RAYON_NUM_THREADS=2 $(CARGO) bench -p trainer --bench train_step -- 3 $(abspath $(SMOLLM2)) 2 512
	.venv-parity/bin/python scripts/bench/smollm2_train.py --midtrain $(MIDTRAIN) --model $(SMOLLM2)

## fixtures: regenerate everything under fixtures/ (deterministic). Built with the workspace's
## features (a `cargo run -p` would rebuild tokenizers and parquet with other features).
fixtures:
	$(CARGO) build --workspace --bins
	$(TARGET_DIR)/debug/midtrain-fixtures fixtures

## tasks: the evaluation tasks of `midtrain eval` from ../shared/corpora (500 items each) into
## out/tasks; fixtures/tasks holds the same made with --items 20 --max-chars 600
tasks:
	bash scripts/parity/setup_venv.sh tasks
	.venv-parity/bin/python scripts/tasks/build_tasks.py --corpora $(CORPORA) --out out/tasks

## The fixture mixture the training configs read (prepare skips finished datasets).
out/mixture/mixture.json: | build
	$(MIDTRAIN) prepare fixtures/prepare.toml
	$(MIDTRAIN) mix build mixtures/recipes/fixtures-anneal.toml --out out/mixture --force

## experiment-context: a tiny model trained at 64 tokens, extended 4x to 256 on CPU with no RoPE
## change, ABF, PI and YaRN side by side; loss by position and passkey per method
## (out/experiments/context/compare.html). Recipe: trainer/configs/experiments/context-*.toml
EXPERIMENTS := out/experiments
experiment-context: out/mixture/mixture.json
	rm -rf $(EXPERIMENTS)/context
	$(MIDTRAIN) train trainer/configs/experiments/context-base.toml --out $(EXPERIMENTS)/context/base --report
	for m in none abf pi yarn; do \
		$(MIDTRAIN) train trainer/configs/experiments/context-$$m.toml --out $(EXPERIMENTS)/context/$$m --report || exit 1; \
	done
	$(MIDTRAIN) compare $(EXPERIMENTS)/context/none $(EXPERIMENTS)/context/abf $(EXPERIMENTS)/context/pi \
		$(EXPERIMENTS)/context/yarn --out $(EXPERIMENTS)/context/compare.html

## experiment-schedules: WSD (1-sqrt decay over the last 20%) vs cosine, same budget, overlaid
experiment-schedules: out/mixture/mixture.json
	rm -rf $(EXPERIMENTS)/schedules
	for s in wsd cosine; do \
		$(MIDTRAIN) train trainer/configs/experiments/schedule-$$s.toml --out $(EXPERIMENTS)/schedules/$$s --report || exit 1; \
	done
	$(MIDTRAIN) compare $(EXPERIMENTS)/schedules/wsd $(EXPERIMENTS)/schedules/cosine \
		--out $(EXPERIMENTS)/schedules/compare.html

## The fastText quality classifier of the SmolLM2 experiments' filtered web: reference text (the
## first 2,000 wiki articles) against random web (the 1,424 web documents that hold no evaluation
## item), the DCLM recipe. Retrained, its checksum no longer matches the one prepare recorded for
## web_quality's filter stage, and prepare stops with an error naming the folder (remove it).
SMOLLM2_TASKS = $(foreach t,math_mc heldout_web heldout_math heldout_books,out/tasks/$(t).jsonl)
$(EXPERIMENTS)/smollm2/quality.bin: | build tasks
	@mkdir -p $(@D)
	rm -rf $(EXPERIMENTS)/smollm2/web-clean
	$(MIDTRAIN) decontaminate $(CORPORA)/web.parquet --against $(SMOLLM2_TASKS) --out $(EXPERIMENTS)/smollm2/web-clean
	$(MIDTRAIN) quality train --positive $(CORPORA)/wiki.parquet \
		--negative '$(EXPERIMENTS)/smollm2/web-clean/kept/*.parquet' --max-per-class 2000 --out $@

## experiment-smollm2-quality: SmolLM2-135M annealed 20k tokens on web through the FineWeb chain
## and the quality score vs the same web unfiltered (math, code, schedule equal), evaluated on the
## corpora tasks and ranked (out/experiments/smollm2/quality/report.html). ~10 min on 2 cores.
## Config: trainer/configs/experiments/smollm2/
experiment-smollm2-quality: build tasks $(EXPERIMENTS)/smollm2/quality.bin
	$(MAKE) $(SMOLLM2)/model.safetensors
	$(MIDTRAIN) prepare trainer/configs/experiments/smollm2/prepare.toml
	$(MIDTRAIN) ablate trainer/configs/experiments/smollm2/quality.toml --out $(EXPERIMENTS)/smollm2/quality

## experiment-smollm2-schedules: SmolLM2-135M annealed 24k tokens with WSD (1-sqrt over the last
## 20%), cosine and linear, and a WSD branch decayed from the stable checkpoint at step 12
## (out/experiments/smollm2/schedules/report.html). ~50 min on 2 cores.
experiment-smollm2-schedules: build tasks $(EXPERIMENTS)/smollm2/quality.bin
	$(MAKE) $(SMOLLM2)/model.safetensors
	$(MIDTRAIN) prepare trainer/configs/experiments/smollm2/prepare.toml
	$(MIDTRAIN) ablate trainer/configs/experiments/smollm2/schedules.toml --out $(EXPERIMENTS)/smollm2/schedules

## experiment-smollm2-context: SmolLM2-135M extended 2,048 -> 8,192 with ABF + YaRN, ABF, PI
## (16k tokens each, 40% from long documents); short-context scores in report.html, passkey by
## length and depth and loss by position in compare.html (out/experiments/smollm2/context/). ~80 min.
experiment-smollm2-context: build tasks $(EXPERIMENTS)/smollm2/quality.bin
	$(MAKE) $(SMOLLM2)/model.safetensors
	$(MIDTRAIN) prepare trainer/configs/experiments/smollm2/prepare.toml
	$(MIDTRAIN) ablate trainer/configs/experiments/smollm2/context.toml --out $(EXPERIMENTS)/smollm2/context
	$(MIDTRAIN) compare $(foreach a,abf-yarn abf pi,$(EXPERIMENTS)/smollm2/context/arms/$(a)/run) \
		--out $(EXPERIMENTS)/smollm2/context/compare.html

## parity: differential checks against the reference implementations (by hand; installs them)
parity: demo
	bash scripts/parity/setup_venv.sh megatron datatrove tokenizers transformers olmo
	.venv-olmo/bin/python scripts/parity/olmo_core_mixture.py out/mixture --max-share-error 0.01
	.venv-olmo/bin/python scripts/parity/olmo_core_mixture.py out/mixture-select --max-share-error 0.01
	rm -rf out/parity-run
	$(MIDTRAIN) train trainer/configs/fixtures-anneal.toml --out out/parity-run
	.venv-parity/bin/python scripts/parity/transformers_llama.py --midtrain $(MIDTRAIN) \
		--checkpoint out/parity-run/checkpoints/step-00000040
	.venv-parity/bin/python scripts/parity/score_checkpoint.py --midtrain $(MIDTRAIN) \
		$(SHARED_MODELS)/tinystories-656k $(wildcard .models/smollm2-135m-bf16)
	.venv-parity/bin/python scripts/parity/megatron_shards.py --midtrain $(MIDTRAIN) --fixtures fixtures/shards
	$(CARGO) build --release --bin midtrain
	.venv-parity/bin/python scripts/parity/datatrove_filters.py --midtrain $(TARGET_DIR)/release/midtrain \
		--corpus $(CORPORA)/web.parquet $(CORPORA)/books.parquet $(CORPORA)/wiki.parquet
	.venv-parity/bin/python scripts/parity/datatrove_minhash.py $(CORPORA)/web_dupes.parquet \
		--midtrain $(TARGET_DIR)/release/midtrain --min-agreement 98
	rm -rf out/parity-dedup
	$(TARGET_DIR)/release/midtrain dedup $(CORPORA)/web_dupes.parquet --out out/parity-dedup -q
	.venv-parity/bin/python scripts/parity/dedup_eval.py out/parity-dedup --dupes $(CORPORA)/web_dupes.parquet \
		--min-precision 0.99 --min-recall 0.95
	for n in zero keep; do rm -rf out/parity-dedup-math-$$n; \
		$(TARGET_DIR)/release/midtrain dedup $(CORPORA)/math.parquet --numbers $$n --out out/parity-dedup-math-$$n -q \
			|| exit 1; \
		.venv-parity/bin/python scripts/parity/dedup_keepers.py out/parity-dedup-math-$$n \
			--corpus $(CORPORA)/math.parquet --numbers $$n --min-share 0.99 || exit 1; done
	.venv-parity/bin/python scripts/parity/tokenize_check.py --midtrain $(TARGET_DIR)/release/midtrain \
		--tokenizer fixtures/tokenizer.json --corpus $(ALL_CORPORA) --edge-cases
	$(MAKE) $(SMOLLM2)/tokenizer.json
	.venv-parity/bin/python scripts/parity/tokenize_check.py --midtrain $(TARGET_DIR)/release/midtrain \
		--tokenizer $(SMOLLM2)/tokenizer.json --corpus $(ALL_CORPORA) --edge-cases
	.venv-parity/bin/python scripts/parity/tokenize_check.py --midtrain $(TARGET_DIR)/release/midtrain \
		--tokenizer $(TINYSTORIES)/tokenizer.json --eos '<|end_story|>' \
		--midtrain-arg=--eos --midtrain-arg='<|end_story|>' --corpus $(ALL_CORPORA) --edge-cases
	.venv-parity/bin/python scripts/parity/chat_templates.py --midtrain $(MIDTRAIN) --smollm2 $(SMOLLM2)
	$(MAKE) $(SMOLLM2)/model.safetensors
	.venv-parity/bin/python scripts/parity/eval_tasks.py --midtrain $(MIDTRAIN) --model $(SMOLLM2) --tasks fixtures/tasks

$(SMOLLM2)/tokenizer.json $(SMOLLM2)/model.safetensors:
	bash scripts/parity/setup_venv.sh transformers
	MODELS_PYTHON=$(abspath .venv-parity/bin/python) bash ../shared/models/get-smollm2.sh $(SMOLLM2)

clean:
	rm -rf out
