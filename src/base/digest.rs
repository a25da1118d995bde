//! `Digest`: a 32-byte BLAKE3 digest, how every layer names content (a
//! file, a stream, a blob, a key). Displayed and parsed as lowercase hex.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A 32-byte BLAKE3 digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The digest as 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        self.hex().to_string()
    }

    /// The hex text without allocating (blake3's own encoding).
    fn hex(&self) -> impl std::ops::Deref<Target = str> {
        blake3::Hash::from_bytes(self.0).to_hex()
    }

    /// The first 12 hex characters, for display.
    pub fn short(&self) -> String {
        self.to_hex()[..12].to_string()
    }

    /// Parse 64 hex characters (either case).
    pub fn from_hex(s: &str) -> Option<Digest> {
        blake3::Hash::from_hex(s).ok().map(Digest::from)
    }

    /// Build a digest from a slice that must be 32 bytes long.
    pub fn from_slice(bytes: &[u8]) -> Option<Digest> {
        Some(Digest(bytes.try_into().ok()?))
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Digest {
        Digest(*h.as_bytes())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.short())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.hex())
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::from_hex(&s).ok_or_else(|| serde::de::Error::custom("invalid digest"))
    }
}
