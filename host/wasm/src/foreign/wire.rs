//! The protobuf wire format, as far as Envoy's foreign functions need it: their arguments are
//! small proto3 messages (`source/extensions/common/wasm/ext/*.proto`) that Envoy parses with
//! `ParseFromString`, and `sign`/`verify_signature` answer with one.
//!
//! Decoding follows the C++ parser: every field is read, the last value of a field wins, a
//! field this side does not know (or a known number with another wire type) is skipped, groups
//! included; a truncated value, a varint over 10 bytes, field number 0, wire types 6 and 7, an
//! unbalanced group, and a `string` field that is not UTF-8 (proto3) make the message
//! malformed. Encoding writes proto3's form: fields in number order, defaults left out.

/// A message that does not parse (`ParseFromString` returned false).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One field's value as it came on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    /// A fixed-width, group or other value no argument message uses: skipped.
    Other,
}

impl<'a> Value<'a> {
    /// A `bool` field (any non-zero varint); another wire type leaves it unset.
    pub fn as_bool(self) -> Option<bool> {
        match self {
            Value::Varint(v) => Some(v != 0),
            _ => None,
        }
    }

    /// A `bytes` field.
    pub fn as_bytes(self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// A proto3 `string` field: UTF-8, or the message is malformed.
    pub fn as_str(self) -> Result<Option<&'a str>, Malformed> {
        match self {
            Value::Bytes(b) => std::str::from_utf8(b).map(Some).map_err(|_| Malformed),
            _ => Ok(None),
        }
    }
}

/// Calls `field(number, value)` for every field of `message`, in order.
pub(crate) fn fields<'a>(
    mut message: &'a [u8],
    mut field: impl FnMut(u32, Value<'a>) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    while !message.is_empty() {
        let (number, value) = next(&mut message)?;
        match value {
            Some(value) => field(number, value)?,
            // An end-group tag outside its group.
            None => return Err(Malformed),
        }
    }
    Ok(())
}

/// The next field, or `None` for an end-group tag.
fn next<'a>(input: &mut &'a [u8]) -> Result<(u32, Option<Value<'a>>), Malformed> {
    let tag = varint(input)?;
    let number = u32::try_from(tag >> 3).map_err(|_| Malformed)?;
    if number == 0 {
        return Err(Malformed);
    }
    let value = match tag & 7 {
        0 => Value::Varint(varint(input)?),
        1 => {
            take(input, 8)?;
            Value::Other
        }
        2 => {
            let len = usize::try_from(varint(input)?).map_err(|_| Malformed)?;
            Value::Bytes(take(input, len)?)
        }
        3 => {
            skip_group(input, number)?;
            Value::Other
        }
        4 => return Ok((number, None)),
        5 => {
            take(input, 4)?;
            Value::Other
        }
        _ => return Err(Malformed),
    };
    Ok((number, Some(value)))
}

/// Skips a group's fields up to its end tag (the same field number).
fn skip_group(input: &mut &[u8], number: u32) -> Result<(), Malformed> {
    loop {
        if input.is_empty() {
            return Err(Malformed);
        }
        match next(input)? {
            (end, None) if end == number => return Ok(()),
            (_, None) => return Err(Malformed),
            (_, Some(_)) => {}
        }
    }
}

fn varint(input: &mut &[u8]) -> Result<u64, Malformed> {
    let mut value = 0u64;
    for (i, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            *input = &input[i + 1..];
            return Ok(value);
        }
    }
    Err(Malformed)
}

fn take<'a>(input: &mut &'a [u8], len: usize) -> Result<&'a [u8], Malformed> {
    if input.len() < len {
        return Err(Malformed);
    }
    let (head, rest) = input.split_at(len);
    *input = rest;
    Ok(head)
}

/// Writes proto3 messages: call the field writers in field-number order.
#[derive(Debug, Default)]
pub(crate) struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.0.push((value as u8) | 0x80);
            value >>= 7;
        }
        self.0.push(value as u8);
    }

    /// A `bool` field (left out when false).
    pub fn bool(&mut self, number: u32, value: bool) {
        if value {
            self.varint(u64::from(number) << 3);
            self.varint(1);
        }
    }

    /// A `bytes` or `string` field (left out when empty).
    pub fn bytes(&mut self, number: u32, value: &[u8]) {
        if !value.is_empty() {
            self.varint((u64::from(number) << 3) | 2);
            self.varint(value.len() as u64);
            self.0.extend_from_slice(value);
        }
    }

    /// The message.
    pub fn finish(self) -> Vec<u8> {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(message: &[u8]) -> Result<Vec<(u32, Value<'_>)>, Malformed> {
        let mut out = Vec::new();
        fields(message, |n, v| {
            out.push((n, v));
            Ok(())
        })?;
        Ok(out)
    }

    /// `DeclarePropertyArguments{name: "p", readonly: true, type: Protobuf}` as protoc writes
    /// it: `0a 01 70` (1, LEN), `10 01` (2, VARINT), `18 03` (3, VARINT).
    #[test]
    fn decodes_what_protoc_writes() {
        let bytes = [0x0a, 0x01, b'p', 0x10, 0x01, 0x18, 0x03];
        assert_eq!(
            all(&bytes),
            Ok(vec![
                (1, Value::Bytes(b"p")),
                (2, Value::Varint(1)),
                (3, Value::Varint(3))
            ])
        );
    }

    /// Unknown fields of every wire type are skipped, a group with its nested fields too.
    #[test]
    fn skips_fixed_width_fields_and_groups() {
        let bytes = [
            0x09, 1, 2, 3, 4, 5, 6, 7, 8, // 1: I64
            0x15, 1, 2, 3, 4, // 2: I32
            0x1b, 0x08, 0x01, 0x1c, // 3: group holding 1: VARINT 1, end group 3
            0x20, 0x96, 0x01, // 4: VARINT 150
        ];
        assert_eq!(
            all(&bytes),
            Ok(vec![
                (1, Value::Other),
                (2, Value::Other),
                (3, Value::Other),
                (4, Value::Varint(150))
            ])
        );
    }

    #[test]
    fn refuses_what_the_cpp_parser_refuses() {
        for bad in [
            &[0x0a, 0x05, b'p'][..], // a length past the end
            &[0x10][..],             // a varint cut short
            &[
                0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..], // 11 bytes
            &[0x00, 0x01][..],       // field number 0
            &[0x0e][..],             // wire type 6
            &[0x1b, 0x08, 0x01][..], // a group never closed
            &[0x1c][..],             // an end group alone
            &[0x1b, 0x24][..],       // a group closed by another number
            &[0x0d, 1, 2][..],       // an I32 cut short
        ] {
            assert_eq!(all(bad).map(|_| ()), Err(Malformed), "{bad:02x?}");
        }
        assert_eq!(Value::Bytes(&[0xff]).as_str(), Err(Malformed));
        assert_eq!(all(&[]), Ok(vec![]));
    }

    /// Each prefix of a message either fails or is a whole message of fewer fields: the cut
    /// never reads past the end.
    #[test]
    fn every_cut_of_a_message_is_safe() {
        let bytes = [0x0a, 0x03, b'a', b'b', b'c', 0x10, 0x96, 0x01, 0x22, 0x00];
        for cut in 0..bytes.len() {
            let _ = all(&bytes[..cut]);
        }
    }

    #[test]
    fn the_writer_leaves_defaults_out_and_round_trips() {
        let mut w = Writer::default();
        w.bool(1, false);
        w.bytes(2, b"");
        assert!(w.finish().is_empty());
        let mut w = Writer::default();
        w.bool(1, true);
        w.bytes(2, &[7; 200]);
        let out = w.finish();
        assert_eq!(&out[..5], &[0x08, 0x01, 0x12, 0xc8, 0x01]);
        assert_eq!(
            all(&out),
            Ok(vec![(1, Value::Varint(1)), (2, Value::Bytes(&[7; 200]))])
        );
    }

    #[test]
    fn a_bool_is_any_non_zero_varint() {
        assert_eq!(Value::Varint(2).as_bool(), Some(true));
        assert_eq!(Value::Varint(0).as_bool(), Some(false));
        assert_eq!(Value::Bytes(b"x").as_bool(), None);
    }
}
