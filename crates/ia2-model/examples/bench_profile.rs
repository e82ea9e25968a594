//! Profiling driver for `perf record`: runs one phase of the benchmark in a loop.
//! `bench_profile train|forward|decode|greedy [iterations]`.

use anyhow::{Context, Result};
use burn::tensor::activation::log_softmax;
use burn::tensor::{DType, Device, Tensor, TensorData};
use ia2_model::bench::{BenchShape, BenchSize, SyntheticWeights, synthetic_lora};
use ia2_model::{Batch, Capture, Decoder, Positions};
use std::time::Instant;

// The allocator of the `ia2` binary, so profiles show what it runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    // On a worker of the pool, as the `ia2` binary runs its commands.
    rayon::ThreadPoolBuilder::new().build()?.install(run)
}

fn run() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let phase = args.next().unwrap_or_else(|| "train".into());
    let iters: usize = args.next().map_or(Ok(10), |s| s.parse())?;
    let shape = BenchShape::new(BenchSize::Reference);
    let device = Device::flex();
    let weights = SyntheticWeights {
        config: shape.config(),
        seed: 1,
    };
    let decoder = Decoder::load(shape.config(), &weights, DType::F32, &device)?;
    let mut adapter = synthetic_lora(&shape, 1, &device);
    let ids: Vec<u32> = (0..shape.seq as u32).map(|i| (i * 31) % 8192).collect();
    match phase.as_str() {
        "greedy" => {
            let options = ia2_model::GenerateOptions {
                max_new_tokens: iters,
                eos_token_ids: Vec::new(),
                pad_token_id: 0,
                use_cache: true,
            };
            let prompt = vec![ids[..16].to_vec()];
            let t = Instant::now();
            ia2_model::greedy(&decoder, None, &prompt, &options, |_, _| false, |_| {})?;
            eprintln!(
                "greedy: {:.2} ms/token",
                t.elapsed().as_secs_f64() * 1e3 / iters as f64
            );
        }
        "decode" => {
            let cap = Capture {
                logits: Positions::Last,
                attn: Positions::None,
            };
            let mut cache = decoder.new_cache(1, Some(&adapter));
            decoder.forward(&Batch::single(&ids[..16]), &mut cache, Some(&adapter), &cap)?;
            let t = Instant::now();
            for i in 0..iters {
                let out = decoder.forward(
                    &Batch::single(&[i as u32]),
                    &mut cache,
                    Some(&adapter),
                    &cap,
                )?;
                let _ = out.logits.context("logits")?.into_data();
            }
            eprintln!(
                "decode: {:.2} ms/token",
                t.elapsed().as_secs_f64() * 1e3 / iters as f64
            );
        }
        "forward" | "train" => {
            let train = phase == "train";
            if train {
                adapter.require_grad();
            }
            let cap = Capture {
                logits: Positions::Last,
                attn: Positions::At(vec![shape.mse_positions.clone()]),
            };
            let target = Tensor::<3>::from_data(
                TensorData::new(vec![0.01f32; 4 * shape.hidden], [1, 4, shape.hidden]),
                &device,
            );
            for i in 0..iters + 1 {
                let t = Instant::now();
                let mut cache = decoder.new_cache(1, Some(&adapter));
                let out =
                    decoder.forward(&Batch::single(&ids), &mut cache, Some(&adapter), &cap)?;
                let mut loss = log_softmax(out.logits.context("logits")?, 2)
                    .narrow(2, 7, 1)
                    .neg()
                    .mean();
                for a in out.attn {
                    loss = loss + (a - target.clone()).square().mean();
                }
                let _: f32 = loss.clone().into_scalar();
                let f = t.elapsed().as_secs_f64() * 1e3;
                if train {
                    let _ = loss.backward();
                }
                if i > 0 {
                    eprintln!(
                        "forward {f:.1} ms, total {:.1} ms",
                        t.elapsed().as_secs_f64() * 1e3
                    );
                }
            }
        }
        other => anyhow::bail!("unknown phase {other}"),
    }
    Ok(())
}
