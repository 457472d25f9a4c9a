//! Binary attachments: checking that a payload's
//! `{"_placeholder":true,"num":N}` objects match the announced attachment
//! count, and [`BinaryAssembler`], which collects the attachments that follow
//! a binary packet.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::Value;

use super::error::Error;
use super::packet::{Packet, DEFAULT_MAX_ATTACHMENTS};
use crate::json::{self, for_each_placeholder};

/// Counts the `{"_placeholder":true,"num":N}` objects in `value`.
///
/// Fails with [`Error::InvalidPlaceholder`] on a placeholder whose `num` is
/// not a non-negative integer.
pub fn count_placeholders(value: &Value) -> Result<usize, Error> {
    let mut count = 0;
    for_each_placeholder(value, |_| {
        count += 1;
        Ok::<(), Error>(())
    })?;
    Ok(count)
}

/// Checks that the placeholders in `value` reference attachments
/// `0..attachments`, each exactly once.
pub fn validate_placeholders(value: &Value, attachments: usize) -> Result<(), Error> {
    let mut seen = vec![false; attachments];
    let mut found = 0usize;
    for_each_placeholder(value, |num| {
        let slot = usize::try_from(num)
            .ok()
            .and_then(|n| seen.get_mut(n))
            .ok_or(Error::InvalidPlaceholder)?;
        if std::mem::replace(slot, true) {
            return Err(Error::PlaceholderMismatch {
                expected: attachments,
            });
        }
        found += 1;
        Ok::<(), Error>(())
    })?;
    if found == attachments {
        Ok(())
    } else {
        Err(Error::PlaceholderMismatch {
            expected: attachments,
        })
    }
}

/// [`validate_placeholders`] on raw JSON text.
pub fn validate_placeholders_raw(data: &RawValue, attachments: usize) -> Result<(), Error> {
    // Fast path: no placeholder key can be present (not even escaped).
    let text = data.get();
    if !json::may_hold_placeholders(text) {
        return if attachments == 0 {
            Ok(())
        } else {
            Err(Error::PlaceholderMismatch {
                expected: attachments,
            })
        };
    }
    let value: Value = serde_json::from_str(data.get()).map_err(Error::InvalidJson)?;
    validate_placeholders(&value, attachments)
}

/// Collects the binary attachments that follow a BINARY_EVENT or
/// BINARY_ACK packet.
///
/// ```
/// use bytes::Bytes;
/// use volna_protocols::socketio::{BinaryAssembler, Packet};
///
/// let p = Packet::decode(r#"51-["baz",{"_placeholder":true,"num":0}]"#).unwrap();
/// let mut asm = BinaryAssembler::new(p).unwrap();
/// assert!(!asm.is_complete());
/// assert!(asm.push(Bytes::from_static(&[1, 2, 3, 4])).unwrap());
/// let (packet, attachments) = asm.finish().unwrap();
/// assert_eq!(packet.attachments, 1);
/// assert_eq!(attachments, vec![Bytes::from_static(&[1, 2, 3, 4])]);
/// ```
#[derive(Debug, Clone)]
pub struct BinaryAssembler {
    packet: Packet,
    buffers: Vec<Bytes>,
}

impl BinaryAssembler {
    /// Starts assembling `packet`, allowing at most
    /// [`DEFAULT_MAX_ATTACHMENTS`] attachments.
    pub fn new(packet: Packet) -> Result<Self, Error> {
        Self::with_max_attachments(packet, DEFAULT_MAX_ATTACHMENTS)
    }

    /// Starts assembling `packet`, allowing at most `max` attachments.
    ///
    /// Fails unless the packet is of a binary kind, announces at most `max`
    /// attachments, and its placeholders reference each attachment exactly
    /// once. A packet announcing 0 attachments is complete at once.
    pub fn with_max_attachments(packet: Packet, max: usize) -> Result<Self, Error> {
        if !packet.kind.is_binary() {
            return Err(Error::NotBinary(packet.kind));
        }
        if packet.attachments > max {
            return Err(Error::TooManyAttachments {
                count: packet.attachments,
                max,
            });
        }
        match packet.data.as_deref() {
            Some(data) => validate_placeholders_raw(data, packet.attachments)?,
            None if packet.attachments == 0 => {}
            None => {
                return Err(Error::PlaceholderMismatch {
                    expected: packet.attachments,
                })
            }
        }
        let buffers = Vec::with_capacity(packet.attachments);
        Ok(Self { packet, buffers })
    }

    /// The packet being assembled.
    pub fn packet(&self) -> &Packet {
        &self.packet
    }

    /// Attachments announced.
    pub fn expected(&self) -> usize {
        self.packet.attachments
    }

    /// Attachments received so far.
    pub fn received(&self) -> usize {
        self.buffers.len()
    }

    /// Whether every attachment has arrived.
    pub fn is_complete(&self) -> bool {
        self.buffers.len() == self.packet.attachments
    }

    /// Adds the next attachment; returns whether the packet is now complete.
    /// Fails if every announced attachment was already received.
    pub fn push(&mut self, attachment: Bytes) -> Result<bool, Error> {
        if self.is_complete() {
            return Err(Error::UnexpectedAttachment);
        }
        self.buffers.push(attachment);
        Ok(self.is_complete())
    }

    /// The packet (placeholders kept in its payload) and its attachments,
    /// indexed by placeholder `num`. Fails if some are still missing.
    pub fn finish(self) -> Result<(Packet, Vec<Bytes>), Error> {
        if !self.is_complete() {
            return Err(Error::Incomplete {
                received: self.buffers.len(),
                expected: self.packet.attachments,
            });
        }
        Ok((self.packet, self.buffers))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::placeholder;
    use crate::socketio::testing::{dec, raw};
    use crate::socketio::PacketKind;

    #[test]
    fn placeholders() {
        let v: Value = serde_json::from_str(
            r#"["a",{"_placeholder":true,"num":1},{"x":[{"_placeholder":true,"num":0}]},{"_placeholder":false,"num":7}]"#,
        )
        .unwrap();
        assert_eq!(count_placeholders(&v).unwrap(), 2);
        validate_placeholders(&v, 2).unwrap();
        assert!(matches!(
            validate_placeholders(&v, 3),
            Err(Error::PlaceholderMismatch { expected: 3 })
        ));
        assert!(matches!(
            validate_placeholders(&v, 1),
            Err(Error::InvalidPlaceholder)
        ));

        let dup: Value = serde_json::from_str(
            r#"[{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]"#,
        )
        .unwrap();
        assert_eq!(count_placeholders(&dup).unwrap(), 2);
        assert!(matches!(
            validate_placeholders(&dup, 2),
            Err(Error::PlaceholderMismatch { .. })
        ));

        for bad in [
            r#"[{"_placeholder":true}]"#,
            r#"[{"_placeholder":true,"num":-1}]"#,
            r#"[{"_placeholder":true,"num":0.5}]"#,
            r#"[{"_placeholder":true,"num":"0"}]"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(
                matches!(count_placeholders(&v), Err(Error::InvalidPlaceholder)),
                "{bad}"
            );
        }
        assert_eq!(placeholder(3).get(), r#"{"_placeholder":true,"num":3}"#);
        validate_placeholders_raw(&raw(r#"["a"]"#), 0).unwrap();
        assert!(validate_placeholders_raw(&raw(r#"["a"]"#), 1).is_err());
    }

    #[test]
    fn assembler() {
        let p =
            dec(r#"52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
        let mut asm = BinaryAssembler::new(p.clone()).unwrap();
        assert_eq!((asm.expected(), asm.received()), (2, 0));
        assert_eq!(asm.packet(), &p);
        assert!(!asm.push(Bytes::from_static(&[1, 2])).unwrap());
        let early = asm.clone().finish();
        assert!(matches!(
            early,
            Err(Error::Incomplete {
                received: 1,
                expected: 2
            })
        ));
        assert!(asm.push(Bytes::from_static(&[3, 4])).unwrap());
        assert!(matches!(
            asm.clone().push(Bytes::new()),
            Err(Error::UnexpectedAttachment)
        ));
        let (packet, bufs) = asm.finish().unwrap();
        assert_eq!(packet, p);
        assert_eq!(
            bufs,
            vec![Bytes::from_static(&[1, 2]), Bytes::from_static(&[3, 4])]
        );

        // Zero attachments: complete at once.
        let asm = BinaryAssembler::new(dec(r#"50-["a"]"#)).unwrap();
        assert!(asm.is_complete());
        assert!(asm.finish().unwrap().1.is_empty());

        // Mismatches.
        let e = BinaryAssembler::new(dec(r#"52-["a",{"_placeholder":true,"num":0}]"#));
        assert!(matches!(e, Err(Error::PlaceholderMismatch { expected: 2 })));
        let e = BinaryAssembler::new(dec(r#"51-["a",{"_placeholder":true,"num":1}]"#));
        assert!(matches!(e, Err(Error::InvalidPlaceholder)));
        let e = BinaryAssembler::new(dec(r#"51-["a"]"#));
        assert!(matches!(e, Err(Error::PlaceholderMismatch { expected: 1 })));
        let e = BinaryAssembler::new(dec(r#"2["a"]"#));
        assert!(matches!(e, Err(Error::NotBinary(PacketKind::Event))));
        let many = format!(
            "511-[\"a\",{}]",
            (0..11)
                .map(|n| placeholder(n).get().to_owned())
                .collect::<Vec<_>>()
                .join(",")
        );
        let e = BinaryAssembler::new(dec(&many));
        assert!(matches!(
            e,
            Err(Error::TooManyAttachments { count: 11, max: 10 })
        ));
        BinaryAssembler::with_max_attachments(dec(&many), 11).unwrap();
    }
}
