//! Model configuration (from `ia2-hf`) and the decoder's projections.

pub use ia2_hf::{Arch, ModelConfig, RopeScaling};

/// The seven linear projections of a decoder layer, named as in Hugging Face checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Proj {
    Q,
    K,
    V,
    O,
    Gate,
    Up,
    Down,
}

impl Proj {
    pub const ALL: [Proj; 7] = [
        Proj::Q,
        Proj::K,
        Proj::V,
        Proj::O,
        Proj::Gate,
        Proj::Up,
        Proj::Down,
    ];

    /// Checkpoint module name, e.g. `q_proj`.
    pub fn name(self) -> &'static str {
        match self {
            Proj::Q => "q_proj",
            Proj::K => "k_proj",
            Proj::V => "v_proj",
            Proj::O => "o_proj",
            Proj::Gate => "gate_proj",
            Proj::Up => "up_proj",
            Proj::Down => "down_proj",
        }
    }

    /// Parent block in the checkpoint (`self_attn` or `mlp`).
    pub fn block(self) -> &'static str {
        match self {
            Proj::Q | Proj::K | Proj::V | Proj::O => "self_attn",
            Proj::Gate | Proj::Up | Proj::Down => "mlp",
        }
    }

    /// Parses a checkpoint module name (`q_proj`, ...).
    pub fn from_name(name: &str) -> Option<Proj> {
        Proj::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Full parameter path of this projection in layer `layer`, without the `.weight` suffix.
    pub fn path(self, layer: usize) -> String {
        format!("model.layers.{layer}.{}.{}", self.block(), self.name())
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// `(in, out)` features of this projection.
    pub fn shape(self, c: &ModelConfig) -> (usize, usize) {
        let (h, q, kv, i) = (
            c.hidden_size,
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
            c.intermediate_size,
        );
        match self {
            Proj::Q => (h, q),
            Proj::K | Proj::V => (h, kv),
            Proj::O => (q, h),
            Proj::Gate | Proj::Up => (h, i),
            Proj::Down => (i, h),
        }
    }

    /// Whether this projection carries a bias.
    pub fn has_bias(self, c: &ModelConfig) -> bool {
        match self {
            Proj::Q | Proj::K | Proj::V => c.qkv_bias(),
            Proj::O => c.o_bias(),
            Proj::Gate | Proj::Up | Proj::Down => c.mlp_bias,
        }
    }
}
