//! `x · Wᵀ` with W in transformers' `[out, in]` layout, whose backward writes W's gradient in
//! that layout. Composed, `x.matmul(&w.t())` gives W a transposed gradient that candle's
//! gradient store then adds element by element across strides, and records two more nodes.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};

use super::{Op, Timed, cpu_tensor, f32_data, matmul, with_data};

pub struct Linear;

impl Linear {
    /// `x [rows, in] · wᵀ` for `w [out, in]` → `[rows, out]`.
    pub fn apply(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        x.contiguous()?.apply_op2(&w.contiguous()?, Linear)
    }

    fn dims(x: &[usize], w: &[usize]) -> candle_core::Result<(usize, usize, usize)> {
        match (x, w) {
            ([rows, i], [o, i2]) if i == i2 => Ok((*rows, *i, *o)),
            _ => candle_core::bail!("linear: input {x:?} and weight {w:?} do not match"),
        }
    }
}

impl CustomOp2 for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let _timed = Timed::forward(Op::Linear);
        let (rows, i, o) = Self::dims(xl.dims(), wl.dims())?;
        let (x, w) = (f32_data(xs, xl, self.name())?, f32_data(ws, wl, self.name())?);
        let mut y = vec![0f32; rows * o];
        matmul((rows, o, i), &mut y, o, false, x, (i, 1), w, (1, i), 1.0, true);
        Ok((CpuStorage::F32(y), Shape::from((rows, o))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _y: &Tensor,
        d_y: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let _timed = Timed::backward(Op::Linear);
        let (rows, i, o) = Self::dims(x.dims(), w.dims())?;
        let name = self.name();
        let (d_x, d_w) = with_data(x, name, |x| {
            with_data(w, name, |w| {
                with_data(d_y, name, |dy| {
                    let mut d_x = vec![0f32; rows * i];
                    matmul((rows, i, o), &mut d_x, i, false, dy, (o, 1), w, (i, 1), 1.0, true);
                    let mut d_w = vec![0f32; o * i];
                    matmul((o, i, rows), &mut d_w, i, false, dy, (1, o), x, (i, 1), 1.0, true);
                    Ok((d_x, d_w))
                })
            })
        })?;
        Ok((Some(cpu_tensor(d_x, x.dims())?), Some(cpu_tensor(d_w, w.dims())?)))
    }
}
