#!/usr/bin/env bash
# Create (if missing) the project-local parity venv `.venv-parity/` at the repo root and install,
# idempotently, the reference packages of the named groups from PyPI.
#
#   scripts/parity/setup_venv.sh [GROUP...]      (default group: megatron)
#
# Groups:
#   megatron      torch megatron-core numpy
#   datatrove     datatrove[processing,io]==0.10.1 spacy==3.8.* pyarrow pandas
#   transformers  torch transformers tokenizers numpy
#   tokenizers    tokenizers
#   fasttext      fasttext-numpy2-wheel numpy
#   olmo          ai2-olmo-core numpy, in its own venv (<repo>/.venv-olmo): it pins torch 2.13 and,
#                 through cached-path, huggingface-hub < 2, which transformers 5 cannot import with
#
# A group is skipped when all of its modules already import in the venv, so re-running is cheap.
# Environment: PYTHON (interpreter used to create the venv, default python3),
#              VENV (venv path, default <repo>/.venv-parity), VENV_OLMO (default <repo>/.venv-olmo).
# Each venv used is checked with `pip check` at the end: a group that breaks another fails here.
set -euo pipefail
set -f  # no globbing: requirement specs contain [ ] and *

export HF_HUB_OFFLINE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv-parity}"
PYTHON="${PYTHON:-python3}"

if [ $# -eq 0 ]; then
  set -- megatron
fi

# group -> pip requirements ; group -> python modules that must import afterwards
group_packages() {
  case "$1" in
    megatron) echo "torch megatron-core numpy" ;;
    datatrove) echo "datatrove[processing,io]==0.10.1 spacy==3.8.* pyarrow pandas" ;;
    transformers) echo "torch transformers tokenizers numpy gguf accelerate" ;;
    tokenizers) echo "tokenizers" ;;
    fasttext) echo "fasttext-numpy2-wheel numpy" ;;
    olmo) echo "ai2-olmo-core numpy" ;;
    tasks) echo "pyarrow" ;;
    *) return 1 ;;
  esac
}
group_modules() {
  case "$1" in
    megatron) echo "torch numpy megatron.core.datasets.indexed_dataset" ;;
    datatrove) echo "datatrove datatrove.pipeline.filters spacy pyarrow pandas" ;;
    transformers) echo "torch transformers tokenizers numpy gguf accelerate" ;;
    tokenizers) echo "tokenizers" ;;
    fasttext) echo "fasttext numpy" ;;
    olmo) echo "olmo_core.data.source_mixture numpy" ;;
    tasks) echo "pyarrow" ;;
    *) return 1 ;;
  esac
}

for g in "$@"; do
  if ! group_packages "$g" >/dev/null; then
    echo "setup_venv: unknown group '$g' (known: megatron datatrove transformers tokenizers fasttext olmo tasks)" >&2
    exit 2
  fi
done

VENV_OLMO="${VENV_OLMO:-$ROOT/.venv-olmo}"
group_venv() {
  case "$1" in
    olmo) echo "$VENV_OLMO" ;;
    *) echo "$VENV" ;;
  esac
}

importable() {
  # all named modules import without error in the interpreter $1
  local py=$1 m
  shift
  for m in "$@"; do
    "$py" -c "import $m" >/dev/null 2>&1 || return 1
  done
}

used=()
for g in "$@"; do
  venv="$(group_venv "$g")"
  if [ ! -x "$venv/bin/python" ]; then
    echo "setup_venv: creating $venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
  fi
  py="$venv/bin/python"
  case " ${used[*]} " in *" $venv "*) ;; *) used+=("$venv") ;; esac
  # shellcheck disable=SC2046
  if importable "$py" $(group_modules "$g"); then
    echo "setup_venv: group '$g' already installed in $venv"
    continue
  fi
  echo "setup_venv: installing group '$g' into $venv: $(group_packages "$g")"
  # shellcheck disable=SC2046
  "$py" -m pip install $(group_packages "$g")
  # shellcheck disable=SC2046
  if ! importable "$py" $(group_modules "$g"); then
    echo "setup_venv: group '$g' installed but does not import: $(group_modules "$g")" >&2
    exit 1
  fi
done

for venv in "${used[@]}"; do
  if ! "$venv/bin/python" -m pip check; then
    echo "setup_venv: $venv has conflicting packages (above): a group broke another's requirements" >&2
    exit 1
  fi
  echo "setup_venv: ready: $venv/bin/python"
done
