//! [`GapBuffer`]: placeholder until the gap buffer lands; delegates to the rope so the crate builds.
pub type GapBuffer = crate::rope::RopeBuffer;
