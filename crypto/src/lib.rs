//! Encrypted VXLAN framing (work in progress).
