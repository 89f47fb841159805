//! PostgreSQL's binary `COPY` format, read (the format of `COPY … TO STDOUT (FORMAT binary)`,
//! "Binary Format" in the `COPY` chapter of PostgreSQL's manual): how the audit verifier
//! reads pages, with no row object, type lookup or allocation per row on the client.
//!
//! The data is an 11-byte signature, a 32-bit flags word and a 32-bit header-extension length
//! (and that many bytes); then per row a 16-bit field count and per field a 32-bit length
//! (`-1` for NULL) and that many bytes; then a field count of `-1`. All integers big-endian.

use crate::store::{Result, StoreError};

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

fn bad(what: &str) -> StoreError {
    StoreError::Database(format!("malformed COPY data from PostgreSQL: {what}"))
}

/// The rows of one complete binary `COPY` output.
pub(crate) struct CopyRows<'a> {
    data: &'a [u8],
    at: usize,
    ended: bool,
}

impl<'a> CopyRows<'a> {
    /// Checks the header.
    pub(crate) fn new(data: &'a [u8]) -> Result<Self> {
        let mut rows = CopyRows {
            data,
            at: 0,
            ended: false,
        };
        if rows.take(SIGNATURE.len())? != SIGNATURE {
            return Err(bad("no signature"));
        }
        // Bit 16 announces OIDs, which were not asked for; bits 17–31 are reserved and a
        // reader must stop at one it does not know. Bits 0–15 may be ignored.
        if rows.int32()? >> 16 != 0 {
            return Err(bad("unexpected flags"));
        }
        let extension = usize::try_from(rows.int32()?).map_err(|_| bad("extension length"))?;
        rows.take(extension)?;
        Ok(rows)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| bad("cut short"))?;
        let bytes = &self.data[self.at..end];
        self.at = end;
        Ok(bytes)
    }

    fn int16(&mut self) -> Result<i16> {
        let b = self.take(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn int32(&mut self) -> Result<i32> {
        let b = self.take(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads the next row into `fields` (`None` = NULL): `false` at the end of the data, which
    /// must then end exactly. A row of another width is an error.
    pub(crate) fn next_row<const N: usize>(
        &mut self,
        fields: &mut [Option<&'a [u8]>; N],
    ) -> Result<bool> {
        if self.ended {
            return Ok(false);
        }
        let count = self.int16()?;
        if count == -1 {
            self.ended = true;
            if self.at != self.data.len() {
                return Err(bad("data after the end"));
            }
            return Ok(false);
        }
        if usize::try_from(count).ok() != Some(N) {
            return Err(bad("unexpected number of columns"));
        }
        for field in fields.iter_mut() {
            let len = self.int32()?;
            *field = match len {
                -1 => None,
                n => Some(self.take(usize::try_from(n).map_err(|_| bad("field length"))?)?),
            };
        }
        Ok(true)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Binary COPY data for `rows`, as PostgreSQL writes it.
    pub(crate) fn encode(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for f in row {
                match f {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(b) => {
                        out.extend_from_slice(&(b.len() as i32).to_be_bytes());
                        out.extend_from_slice(b);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    fn read<const N: usize>(data: &[u8]) -> Result<Vec<[Option<Vec<u8>>; N]>> {
        let mut rows = CopyRows::new(data)?;
        let mut fields = [None; N];
        let mut out = vec![];
        while rows.next_row(&mut fields)? {
            out.push(fields.map(|f| f.map(<[u8]>::to_vec)));
        }
        Ok(out)
    }

    #[test]
    fn rows_and_nulls_are_read_back() {
        let data = encode(&[
            vec![Some(b"a".as_slice()), None],
            vec![Some(b"".as_slice()), Some(b"\xff\x00".as_slice())],
        ]);
        assert_eq!(
            read::<2>(&data).unwrap(),
            [
                [Some(b"a".to_vec()), None],
                [Some(vec![]), Some(vec![0xff, 0])]
            ]
        );
        assert!(read::<2>(&encode(&[])).unwrap().is_empty());
    }

    #[test]
    fn a_header_extension_is_skipped() {
        let mut data = SIGNATURE.to_vec();
        data.extend_from_slice(&0x0000_ffffu32.to_be_bytes()); // low flag bits may be ignored
        data.extend_from_slice(&3i32.to_be_bytes());
        data.extend_from_slice(b"xyz");
        data.extend_from_slice(&1i16.to_be_bytes());
        data.extend_from_slice(&1i32.to_be_bytes());
        data.extend_from_slice(b"v");
        data.extend_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(read::<1>(&data).unwrap(), [[Some(b"v".to_vec())]]);
    }

    #[test]
    fn anything_else_is_refused() {
        let good = encode(&[vec![Some(b"abc".as_slice()), None]]);
        assert!(read::<2>(&good).is_ok());
        // Every truncation, and anything after the end.
        for n in 0..good.len() {
            assert!(read::<2>(&good[..n]).is_err(), "cut at {n}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(read::<2>(&longer).is_err());
        // Another width, another signature, OIDs, a negative length.
        assert!(read::<3>(&good).is_err());
        let mut sig = good.clone();
        sig[0] = b'X';
        assert!(read::<2>(&sig).is_err());
        let mut oids = good.clone();
        oids[11..15].copy_from_slice(&0x0001_0000u32.to_be_bytes());
        assert!(read::<2>(&oids).is_err());
        let mut negative = good.clone();
        negative[21..25].copy_from_slice(&(-2i32).to_be_bytes());
        assert!(read::<2>(&negative).is_err());
    }
}
