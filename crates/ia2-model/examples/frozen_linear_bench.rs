//! Times the frozen projection ([`ia2_model::fused::frozen_linear`]) with f32, bf16 and f16 weights,
//! forward and forward + backward (the input gradient), against the former bf16 path (an f32 copy of
//! the whole weight per call), at the shape of an MLP projection over a ~300-token prompt and of the
//! language-model head at 8 positions:
//! `cargo run --release -p ia2-model --example frozen_linear_bench [-- REPS]`; with `-- mem`, the peak
//! memory of the head's forward and backward with a bf16 weight instead.

use burn::tensor::bf16;
use burn::tensor::module::linear;
use burn::tensor::{DType, Device, Tensor, TensorData};
use ia2_model::fused;
use ia2_model::fused::frozen_linear::{self as kernel, Weights};
use std::sync::Arc;
use std::time::Instant;

fn uniform(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn range(ms: &[f64]) -> String {
    let min = ms.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = ms.iter().cloned().fold(0.0, f64::max);
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    format!(
        "{min:8.2} – {max:8.2} ms (median {:8.2})",
        sorted[sorted.len() / 2]
    )
}

/// Peak resident memory of this process so far, in MiB (Linux; 0 elsewhere).
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `mem`: the peak memory of the language-model head's forward and backward with a bf16 weight, in a
/// fresh process holding nothing else (the weight is made in bf16 directly).
fn memory(device: &Device) {
    let (rows, inp, out) = (8, 1024, 151_669);
    let w: Vec<bf16> = (0..out)
        .flat_map(|o| uniform(inp, o as u64))
        .map(bf16::from_f32)
        .collect();
    let w = Tensor::<2>::from_data(TensorData::new(w, [out, inp]), (device, DType::BF16));
    let x = Tensor::<2>::from_data(TensorData::new(uniform(rows * inp, 2), [rows, inp]), device);
    let g = Tensor::<2>::from_data(TensorData::new(uniform(rows * out, 3), [rows, out]), device);
    let before = peak_rss_mb();
    let xa = x.clone().autodiff().require_grad();
    let y = fused::frozen_linear(xa.clone(), w.clone());
    let grads = (y * g.autodiff()).sum().backward();
    let _ = xa.grad(&grads).expect("x has a gradient");
    let after_op = peak_rss_mb();
    let _ = linear(x, w.cast(DType::F32).transpose(), None);
    let after_old = peak_rss_mb();
    println!(
        "lm head bf16 weight ({:.0} MiB): peak RSS {before:.0} MiB before; +{:.0} MiB over the op's \
         forward+backward; +{:.0} MiB more over the former path's forward",
        (out * inp * 2) as f64 / (1 << 20) as f64,
        after_op - before,
        after_old - after_op
    );
}

fn main() {
    let device = Device::flex();
    if std::env::args().nth(1).as_deref() == Some("mem") {
        memory(&device);
        return;
    }
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(7);
    for (label, rows, inp, out) in [
        ("mlp 300x1024->3072", 300, 1024, 3072),
        ("lm head 8x1024->151669", 8, 1024, 151_669),
    ] {
        let w32 =
            Tensor::<2>::from_data(TensorData::new(uniform(out * inp, 1), [out, inp]), &device);
        let x = Tensor::<2>::from_data(
            TensorData::new(uniform(rows * inp, 2), [rows, inp]),
            &device,
        );
        let g = Tensor::<2>::from_data(
            TensorData::new(uniform(rows * out, 3), [rows, out]),
            &device,
        );
        println!("{label} ({reps} runs each, interleaved)");
        let mut cases: Vec<(String, Box<dyn FnMut()>)> = Vec::new();
        for dtype in [DType::F32, DType::BF16, DType::F16] {
            let w = w32.clone().cast(dtype);
            let (xc, wc) = (x.clone(), w.clone());
            cases.push((
                format!("{dtype:?} op forward"),
                Box::new(move || {
                    let _ = fused::frozen_linear(xc.clone(), wc.clone());
                }),
            ));
            let (xc, wc, gc) = (x.clone(), w.clone(), g.clone());
            cases.push((
                format!("{dtype:?} op forward+backward"),
                Box::new(move || {
                    let xa = xc.clone().autodiff().require_grad();
                    let y = fused::frozen_linear(xa.clone(), wc.clone());
                    let grads = (y * gc.clone().autodiff()).sum().backward();
                    let _ = xa.grad(&grads).expect("x has a gradient");
                }),
            ));
            if rows <= 16 {
                let (xc, wc) = (x.clone(), w.clone());
                cases.push((
                    format!("{dtype:?} linear_rows (decode)"),
                    Box::new(move || {
                        let _ = fused::linear_rows(xc.clone(), wc.clone());
                    }),
                ));
            }
            if dtype != DType::F32 {
                let (xc, wc) = (x.clone(), w.clone());
                cases.push((
                    format!("{dtype:?} former path forward"),
                    Box::new(move || {
                        let _ = linear(xc.clone(), wc.clone().cast(DType::F32).transpose(), None);
                    }),
                ));
            }
        }
        // The host kernels alone (no tensor or autodiff bookkeeping), f32 through the same gemm.
        let (xv, gv, wv) = (
            uniform(rows * inp, 2),
            uniform(rows * out, 3),
            uniform(out * inp, 1),
        );
        let wb: Vec<bf16> = wv.iter().map(|&v| bf16::from_f32(v)).collect();
        let (xv, gv, wv, wb) = (Arc::new(xv), Arc::new(gv), Arc::new(wv), Arc::new(wb));
        for half in [false, true] {
            let name = if half { "BF16" } else { "F32" };
            let (xc, wc, bc) = (xv.clone(), wv.clone(), wb.clone());
            cases.push((
                format!("{name} kernel forward"),
                Box::new(move || {
                    let w = if half {
                        Weights::Bf16(&bc)
                    } else {
                        Weights::F32(&wc)
                    };
                    let _ = kernel::forward(&xc, w, rows, inp, out);
                }),
            ));
            let (gc, wc, bc) = (gv.clone(), wv.clone(), wb.clone());
            cases.push((
                format!("{name} kernel backward"),
                Box::new(move || {
                    let w = if half {
                        Weights::Bf16(&bc)
                    } else {
                        Weights::F32(&wc)
                    };
                    let _ = kernel::backward(&gc, w, rows, inp, out);
                }),
            ));
        }
        let mut ms = vec![Vec::new(); cases.len()];
        for rep in 0..=reps {
            for (i, (_, f)) in cases.iter_mut().enumerate() {
                let t = Instant::now();
                f();
                // The first round warms up.
                if rep > 0 {
                    ms[i].push(t.elapsed().as_secs_f64() * 1e3);
                }
            }
        }
        for ((name, _), ms) in cases.iter().zip(&ms) {
            println!("  {name:28} {}", range(ms));
        }
    }
}
