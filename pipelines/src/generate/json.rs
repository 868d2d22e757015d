//! A tiny JSON object writer for generated records: fields appended straight
//! into the payload buffer, numbers written by hand, no intermediate values.
//! The generators only write ASCII identifiers as strings, so nothing needs
//! escaping (checked in debug builds).

use super::time::push_rfc3339_ms;

/// Appends the decimal digits of `v`.
pub(crate) fn push_u64(out: &mut Vec<u8>, v: u64) {
    push_padded(out, v, 1);
}

/// Appends `v` with at least `width` digits, zeros in front.
pub(crate) fn push_padded(out: &mut Vec<u8>, v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut i = buf.len();
    let mut rest = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = i.min(buf.len() - width.min(buf.len()));
    out.extend_from_slice(&buf[start..]);
}

/// Appends the lowercase hex digits of `v`.
pub(crate) fn push_hex(out: &mut Vec<u8>, mut v: u64) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 16];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(v & 15) as usize];
        v >>= 4;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

/// Appends `units / 10^decimals` as a decimal number (`1234`, 2 → `12.34`).
pub(crate) fn push_fixed(out: &mut Vec<u8>, units: i64, decimals: u32) {
    if units < 0 {
        out.push(b'-');
    }
    let units = units.unsigned_abs();
    let scale = 10u64.pow(decimals);
    push_u64(out, units / scale);
    if decimals > 0 {
        out.push(b'.');
        push_padded(out, units % scale, decimals as usize);
    }
}

/// One JSON object being written; [`Obj::end`] closes it.
pub(crate) struct Obj<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl<'a> Obj<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>) -> Obj<'a> {
        out.push(b'{');
        Obj { out, first: true }
    }

    /// Writes `"name":` (with the comma before it when needed) and returns
    /// the buffer for the value.
    pub(crate) fn key(&mut self, name: &str) -> &mut Vec<u8> {
        if !self.first {
            self.out.push(b',');
        }
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
        self.out
    }

    pub(crate) fn str(&mut self, name: &str, value: &str) {
        debug_assert!(value.bytes().all(|c| c.is_ascii_graphic() && c != b'"' && c != b'\\'), "{value}");
        let out = self.key(name);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }

    pub(crate) fn fixed(&mut self, name: &str, units: i64, decimals: u32) {
        push_fixed(self.key(name), units, decimals);
    }

    pub(crate) fn ts(&mut self, name: &str, ms: i64) {
        let out = self.key(name);
        out.push(b'"');
        push_rfc3339_ms(out, ms);
        out.push(b'"');
    }

    pub(crate) fn raw(&mut self, name: &str, json: &str) {
        self.key(name).extend_from_slice(json.as_bytes());
    }

    pub(crate) fn end(self) {
        self.out.push(b'}');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(f: impl FnOnce(&mut Vec<u8>)) -> String {
        let mut out = Vec::new();
        f(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers() {
        assert_eq!(s(|o| push_u64(o, 0)), "0");
        assert_eq!(s(|o| push_u64(o, u64::MAX)), u64::MAX.to_string());
        assert_eq!(s(|o| push_padded(o, 42, 7)), "0000042");
        assert_eq!(s(|o| push_padded(o, 12_345_678, 7)), "12345678");
        assert_eq!(s(|o| push_padded(o, 7, 0)), "7");
        assert_eq!(s(|o| push_hex(o, 0xbeef)), "beef");
        assert_eq!(s(|o| push_fixed(o, 1234, 2)), "12.34");
        assert_eq!(s(|o| push_fixed(o, 5, 2)), "0.05");
        assert_eq!(s(|o| push_fixed(o, -1205, 2)), "-12.05");
        assert_eq!(s(|o| push_fixed(o, 1234, 6)), "0.001234");
        assert_eq!(s(|o| push_fixed(o, 12, 0)), "12");
    }

    #[test]
    fn an_object_is_valid_json() {
        let text = s(|o| {
            let mut obj = Obj::new(o);
            obj.str("id", "card-0000001");
            obj.fixed("amount", 1999, 2);
            obj.ts("ts", 1_704_067_200_000);
            obj.raw("ok", "true");
            obj.end();
        });
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["id"], "card-0000001");
        assert_eq!(v["amount"], 19.99);
        assert_eq!(v["ts"], "2024-01-01T00:00:00.000Z");
        assert_eq!(v["ok"], true);
    }
}
