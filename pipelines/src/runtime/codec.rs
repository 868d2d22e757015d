//! The compact binary form of keyed window state inside a checkpoint.
//!
//! JSON of a few million (window, key) pairs is hundreds of megabytes and
//! tens of seconds of a task's time at every checkpoint; this form is a few
//! dozen bytes per pair, written straight from the state without a copy
//! ([`super::state::WindowState::encode`]). Little-endian fixed-width
//! integers, length-prefixed text, one tag byte per value and accumulator.
//! Reading checks every length and tag, and says where it stopped.

use super::replay::LowWater;
use super::state::{Acc, DistinctSet, Value};

/// Appends values to a byte buffer.
pub(crate) struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn i64(&mut self, v: i64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn len(&mut self, n: usize) {
        self.u64(n as u64);
    }

    pub fn value(&mut self, v: &Value) {
        match v {
            Value::Null => self.u8(0),
            Value::Bool(b) => {
                self.u8(1);
                self.u8(u8::from(*b));
            }
            Value::Int(i) => {
                self.u8(2);
                self.i64(*i);
            }
            Value::UInt(u) => {
                self.u8(3);
                self.u64(*u);
            }
            Value::Float(bits) => {
                self.u8(4);
                self.u64(*bits);
            }
            Value::Str(s) => {
                self.u8(5);
                self.u32(s.len() as u32);
                self.0.extend_from_slice(s.as_bytes());
            }
        }
    }

    pub fn values(&mut self, vs: &[Value]) {
        self.u32(vs.len() as u32);
        for v in vs {
            self.value(v);
        }
    }

    fn opt_value(&mut self, v: &Option<Value>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.value(v);
            }
        }
    }

    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            None => self.u8(0),
            Some(v) => {
                self.u8(1);
                self.u64(v);
            }
        }
    }

    pub fn acc(&mut self, a: &Acc) {
        match a {
            Acc::Count(n) => {
                self.u8(0);
                self.i64(*n);
            }
            Acc::Distinct(set) => {
                self.u8(1);
                self.u32(set.len() as u32);
                for v in set.values() {
                    self.value(v);
                }
            }
            Acc::SumInt(s) => {
                self.u8(2);
                self.opt_u64(s.map(|v| v as u64));
            }
            Acc::SumUInt(s) => {
                self.u8(3);
                self.opt_u64(*s);
            }
            Acc::SumFloat(s) => {
                self.u8(4);
                self.opt_u64(*s);
            }
            Acc::Min(m) => {
                self.u8(5);
                self.opt_value(m);
            }
            Acc::Max(m) => {
                self.u8(6);
                self.opt_value(m);
            }
            Acc::Avg(sum, n) => {
                self.u8(7);
                self.u64(*sum);
                self.i64(*n);
            }
        }
    }

    pub fn accs(&mut self, accs: &[Acc]) {
        self.u32(accs.len() as u32);
        for a in accs {
            self.acc(a);
        }
    }

    pub fn low(&mut self, low: &LowWater) {
        let pairs: Vec<_> = low.iter().collect();
        self.u32(pairs.len() as u32);
        for ((src, part), off) in pairs {
            self.u32(src);
            self.u32(part as u32);
            self.i64(off);
        }
    }
}

/// Reads what [`Writer`] wrote; every error names the byte offset.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

type Read<T> = Result<T, String>;

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, at: 0 }
    }

    pub fn is_done(&self) -> bool {
        self.at == self.bytes.len()
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            format!("window state truncated at byte {} (wanted {n} more, {} left)", self.at, self.bytes.len() - self.at)
        })?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn bad_tag(&self, what: &str, tag: u8) -> String {
        format!("window state: unknown {what} tag {tag} at byte {}", self.at - 1)
    }

    pub fn u8(&mut self) -> Read<u8> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Read<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    pub fn u64(&mut self) -> Read<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    pub fn i64(&mut self) -> Read<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    /// A count, refused when it could not fit in what is left (each item
    /// takes at least `min_item` bytes): a damaged length never allocates.
    pub fn len(&mut self, min_item: usize) -> Read<usize> {
        let n = self.u64()?;
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_item as u64) > left {
            return Err(format!("window state: a count of {n} at byte {} exceeds the {left} bytes left", self.at - 8));
        }
        Ok(n as usize)
    }
    fn count32(&mut self, min_item: usize) -> Read<usize> {
        let n = u64::from(self.u32()?);
        let left = (self.bytes.len() - self.at) as u64;
        if n.saturating_mul(min_item as u64) > left {
            return Err(format!("window state: a count of {n} at byte {} exceeds the {left} bytes left", self.at - 4));
        }
        Ok(n as usize)
    }

    pub fn value(&mut self) -> Read<Value> {
        Ok(match self.u8()? {
            0 => Value::Null,
            1 => Value::Bool(self.u8()? != 0),
            2 => Value::Int(self.i64()?),
            3 => Value::UInt(self.u64()?),
            4 => Value::Float(self.u64()?),
            5 => {
                let n = self.u32()? as usize;
                let at = self.at;
                let b = self.take(n)?;
                Value::Str(
                    std::str::from_utf8(b)
                        .map_err(|e| format!("window state: text at byte {at} is not UTF-8: {e}"))?
                        .to_string(),
                )
            }
            t => return Err(self.bad_tag("value", t)),
        })
    }

    pub fn values(&mut self) -> Read<Vec<Value>> {
        let n = self.count32(1)?;
        (0..n).map(|_| self.value()).collect()
    }

    fn opt_value(&mut self) -> Read<Option<Value>> {
        Ok(match self.u8()? {
            0 => None,
            1 => Some(self.value()?),
            t => return Err(self.bad_tag("option", t)),
        })
    }

    fn opt_u64(&mut self) -> Read<Option<u64>> {
        Ok(match self.u8()? {
            0 => None,
            1 => Some(self.u64()?),
            t => return Err(self.bad_tag("option", t)),
        })
    }

    pub fn acc(&mut self) -> Read<Acc> {
        Ok(match self.u8()? {
            0 => Acc::Count(self.i64()?),
            1 => {
                let n = self.count32(1)?;
                let mut set = DistinctSet::default();
                for _ in 0..n {
                    set.insert(&self.value()?);
                }
                Acc::Distinct(set)
            }
            2 => Acc::SumInt(self.opt_u64()?.map(|v| v as i64)),
            3 => Acc::SumUInt(self.opt_u64()?),
            4 => Acc::SumFloat(self.opt_u64()?),
            5 => Acc::Min(self.opt_value()?),
            6 => Acc::Max(self.opt_value()?),
            7 => Acc::Avg(self.u64()?, self.i64()?),
            t => return Err(self.bad_tag("aggregate", t)),
        })
    }

    pub fn accs(&mut self) -> Read<Vec<Acc>> {
        let n = self.count32(1)?;
        (0..n).map(|_| self.acc()).collect()
    }

    pub fn low(&mut self) -> Read<LowWater> {
        let n = self.count32(16)?;
        let mut low = LowWater::default();
        for _ in 0..n {
            let src = self.u32()?;
            let part = self.u32()? as i32;
            low.note((src, part), self.i64()?);
        }
        Ok(low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_acc() -> Vec<Acc> {
        let mut set = DistinctSet::default();
        for i in 0..40 {
            set.insert(&Value::Int(i % 25));
        }
        vec![
            Acc::Count(7),
            Acc::Distinct(set),
            Acc::Distinct(DistinctSet::default()),
            Acc::SumInt(Some(-5)),
            Acc::SumInt(None),
            Acc::SumUInt(Some(u64::MAX)),
            Acc::SumFloat(Some(2.5f64.to_bits())),
            Acc::Min(Some(Value::Str("é".into()))),
            Acc::Max(None),
            Acc::Avg(1.5f64.to_bits(), 3),
        ]
    }

    #[test]
    fn values_and_accumulators_round_trip() {
        let vals = vec![
            Value::Null,
            Value::Bool(true),
            Value::Int(i64::MIN),
            Value::UInt(3),
            Value::float(-0.0),
            Value::Str(String::new()),
            Value::Str("card-0000001".into()),
        ];
        let mut buf = Vec::new();
        let mut w = Writer(&mut buf);
        w.values(&vals);
        w.accs(&every_acc());
        let mut r = Reader::new(&buf);
        assert_eq!(r.values().unwrap(), vals);
        assert_eq!(r.accs().unwrap(), every_acc());
        assert!(r.is_done());
    }

    #[test]
    fn damaged_bytes_are_refused_with_where() {
        let mut buf = Vec::new();
        Writer(&mut buf).values(&[Value::Str("abc".into())]);
        let e = Reader::new(&buf[..buf.len() - 1]).values().unwrap_err();
        assert!(e.contains("truncated at byte"), "{e}");
        let mut bad = buf.clone();
        bad[4] = 9;
        let e = Reader::new(&bad).values().unwrap_err();
        assert!(e.contains("unknown value tag 9 at byte 4"), "{e}");
        let huge = u32::MAX.to_le_bytes();
        let e = Reader::new(&huge).values().unwrap_err();
        assert!(e.contains("exceeds"), "{e}");
    }
}
