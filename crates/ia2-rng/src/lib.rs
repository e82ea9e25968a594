//! numpy-compatible random streams (PCG64 `Generator`, legacy MT19937 `RandomState`).
