//! GPU scoring with wgpu (WebGPU in the browser, Vulkan/lavapipe or others natively): the
//! squared-L2 distances of one or more queries to every row of an item matrix, computed by the
//! compute shader in `gpu.wgsl`; top-K is a cheap final pass on the CPU (`score::top_k`).
//! The matrix is uploaded once, in chunks that respect the device's storage-binding and buffer
//! limits. Results equal the CPU scorer's up to float rounding; invalid rows score +∞ as there.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::score::{dot, ItemMatrix};

struct Chunk {
    first_row: usize,
    rows: usize,
    items: wgpu::Buffer,
    norms: wgpu::Buffer,
}

/// An item matrix resident on a GPU.
pub struct GpuScorer {
    device: wgpu::Device,
    queue: wgpu::Queue,
    pipeline: wgpu::ComputePipeline,
    chunks: Vec<Chunk>,
    dim: usize,
    valid: Vec<bool>,
    /// Adapter name and backend, for reporting which device ran.
    pub adapter: String,
    /// A software adapter (the device type is a CPU: SwiftShader, lavapipe, a browser's
    /// fallback adapter). The wasm CPU path beats it (`www/bench.html`), so `auto` skips it.
    pub software: bool,
}

fn gpu_err(context: &str, e: impl std::fmt::Display) -> Error {
    Error::invalid("gpu", format!("{context}: {e}"))
}

const WORKGROUP: usize = 64;

impl GpuScorer {
    /// Requests an adapter and device and uploads `matrix`. `Ok(None)` when no adapter exists
    /// (no WebGPU in this browser, no Vulkan driver): callers fall back to the CPU scorer.
    pub async fn new(matrix: &ItemMatrix) -> Result<Option<Self>> {
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
        let Ok(adapter) = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
        else {
            return Ok(None);
        };
        let info = adapter.get_info();
        let limits = adapter.limits();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("l2d"),
                required_limits: wgpu::Limits {
                    max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                    max_buffer_size: limits.max_buffer_size,
                    ..wgpu::Limits::downlevel_defaults()
                },
                ..Default::default()
            })
            .await
            .map_err(|e| gpu_err("request_device", e))?;
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some("gpu.wgsl"),
            source: wgpu::ShaderSource::Wgsl(include_str!("gpu.wgsl").into()),
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some("l2d distances"),
            layout: None,
            module: &module,
            entry_point: Some("main"),
            compilation_options: Default::default(),
            cache: None,
        });
        let dim = matrix.dim();
        let max_binding = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let rows_per_chunk = ((max_binding / (dim as u64 * 4)) as usize)
            .min(limits.max_compute_workgroups_per_dimension as usize * WORKGROUP)
            .max(1);
        let values = matrix.to_f32_values();
        let norms = matrix.norms();
        let mut chunks = Vec::new();
        let mut first_row = 0;
        while first_row < matrix.rows() {
            let rows = rows_per_chunk.min(matrix.rows() - first_row);
            let items = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("items"),
                contents: bytemuck::cast_slice(&values[first_row * dim..(first_row + rows) * dim]),
                usage: wgpu::BufferUsages::STORAGE,
            });
            let norm_buf = device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("norms"),
                contents: bytemuck::cast_slice(&norms[first_row..first_row + rows]),
                usage: wgpu::BufferUsages::STORAGE,
            });
            chunks.push(Chunk {
                first_row,
                rows,
                items,
                norms: norm_buf,
            });
            first_row += rows;
        }
        Ok(Some(GpuScorer {
            device,
            queue,
            pipeline,
            chunks,
            dim,
            valid: matrix.valid().to_vec(),
            adapter: format!("{} ({:?}, {:?})", info.name, info.backend, info.device_type),
            software: info.device_type == wgpu::DeviceType::Cpu,
        }))
    }

    /// Squared distances of each query to every row (+∞ for invalid rows), like
    /// [`ItemMatrix::distances`].
    pub async fn distances(&self, queries: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if let Some(q) = queries.iter().find(|q| q.len() != self.dim) {
            return Err(Error::mismatch("query dimension", self.dim, q.len()));
        }
        let total_rows = self.valid.len();
        let mut out = vec![vec![0f32; total_rows]; queries.len()];
        if queries.is_empty() || total_rows == 0 {
            return Ok(out);
        }
        let flat: Vec<f32> = queries.iter().flatten().copied().collect();
        let query_buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some("queries"),
                contents: bytemuck::cast_slice(&flat),
                usage: wgpu::BufferUsages::STORAGE,
            });
        for chunk in &self.chunks {
            let params = [chunk.rows as u32, self.dim as u32, queries.len() as u32, 0];
            let params_buf = self
                .device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents: bytemuck::cast_slice(&params),
                    usage: wgpu::BufferUsages::UNIFORM,
                });
            let size = (chunk.rows * queries.len() * 4) as u64;
            let result = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("distances"),
                size,
                usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            });
            let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("readback"),
                size,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            let bind_group = self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: None,
                layout: &self.pipeline.get_bind_group_layout(0),
                entries: &[
                    wgpu::BindGroupEntry {
                        binding: 0,
                        resource: params_buf.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 1,
                        resource: chunk.items.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 2,
                        resource: chunk.norms.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 3,
                        resource: query_buf.as_entire_binding(),
                    },
                    wgpu::BindGroupEntry {
                        binding: 4,
                        resource: result.as_entire_binding(),
                    },
                ],
            });
            let mut encoder = self
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: None });
            {
                let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: None,
                    timestamp_writes: None,
                });
                pass.set_pipeline(&self.pipeline);
                pass.set_bind_group(0, &bind_group, &[]);
                pass.dispatch_workgroups(
                    chunk.rows.div_ceil(WORKGROUP) as u32,
                    queries.len() as u32,
                    1,
                );
            }
            encoder.copy_buffer_to_buffer(&result, 0, &staging, 0, size);
            self.queue.submit([encoder.finish()]);
            let slice = staging.slice(..);
            let (sender, receiver) = futures_channel::oneshot::channel();
            slice.map_async(wgpu::MapMode::Read, move |r| {
                let _ = sender.send(r);
            });
            #[cfg(not(target_arch = "wasm32"))]
            self.device
                .poll(wgpu::PollType::wait_indefinitely())
                .map_err(|e| gpu_err("poll", e))?;
            receiver
                .await
                .map_err(|e| gpu_err("readback", e))?
                .map_err(|e| gpu_err("map", e))?;
            {
                let view = slice
                    .get_mapped_range()
                    .map_err(|e| gpu_err("mapped range", e))?;
                let partial: &[f32] = bytemuck::cast_slice(&view);
                for (q, query) in queries.iter().enumerate() {
                    let q_norm = dot(query, query);
                    let dst = &mut out[q][chunk.first_row..chunk.first_row + chunk.rows];
                    for (r, (d, &p)) in dst
                        .iter_mut()
                        .zip(&partial[q * chunk.rows..(q + 1) * chunk.rows])
                        .enumerate()
                    {
                        *d = if self.valid[chunk.first_row + r] {
                            (q_norm + p).max(0.0)
                        } else {
                            f32::INFINITY
                        };
                    }
                }
            }
            staging.unmap();
        }
        Ok(out)
    }
}
