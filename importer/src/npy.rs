//! NumPy `.npy` files of little-endian f32 (`<f4`, C order): what `inspect --dequantize` writes
//! and what the reference fixtures made by gguf-py are stored as.

use std::io::{Read, Write};

/// Writes `data` with row-major `shape` as an `.npy` (format version 1.0).
pub fn write_f32(w: &mut impl Write, shape: &[usize], data: &[f32]) -> std::io::Result<()> {
    let dims = match shape {
        [d] => format!("({d},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {dims}, }}");
    // Magic (6) + version (2) + header length (2) + header, padded with spaces to a multiple of 64,
    // ending in a newline.
    let total = (10 + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - 10 - header.len() - 1));
    header.push('\n');
    w.write_all(b"\x93NUMPY\x01\x00")?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())?;
    let mut buf = Vec::with_capacity(data.len() * 4);
    for x in data {
        buf.extend_from_slice(&x.to_le_bytes());
    }
    w.write_all(&buf)
}

/// Reads an `.npy` of `<f4` in C order: its shape and values.
pub fn read_f32(r: &mut impl Read) -> std::io::Result<(Vec<usize>, Vec<f32>)> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("npy: {m}"));
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(bad("bad magic"));
    }
    let header_len = if magic[6] == 1 {
        let mut l = [0u8; 2];
        r.read_exact(&mut l)?;
        u16::from_le_bytes(l) as usize
    } else {
        let mut l = [0u8; 4];
        r.read_exact(&mut l)?;
        u32::from_le_bytes(l) as usize
    };
    let mut header = vec![0u8; header_len];
    r.read_exact(&mut header)?;
    let header = String::from_utf8(header).map_err(|_| bad("header is not UTF-8"))?;
    if !header.contains("'descr': '<f4'") || !header.contains("'fortran_order': False") {
        return Err(bad("only little-endian f32 in C order is read"));
    }
    let shape_start =
        header.find("'shape': (").ok_or_else(|| bad("no shape"))? + "'shape': (".len();
    let shape_end = header[shape_start..]
        .find(')')
        .ok_or_else(|| bad("bad shape"))?
        + shape_start;
    let shape = header[shape_start..shape_end]
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<usize>().map_err(|_| bad("bad shape")))
        .collect::<std::io::Result<Vec<_>>>()?;
    let n: usize = shape.iter().product();
    let mut bytes = vec![0u8; n * 4];
    r.read_exact(&mut bytes)?;
    let data = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("chunks of 4")))
        .collect();
    Ok((shape, data))
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        for shape in [vec![3], vec![2, 3], vec![1, 2, 2]] {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 1.0).collect();
            let mut buf = Vec::new();
            super::write_f32(&mut buf, &shape, &data).unwrap();
            assert_eq!(buf.len() % 64, n * 4 % 64);
            let (s, d) = super::read_f32(&mut buf.as_slice()).unwrap();
            assert_eq!(s, shape);
            assert_eq!(d, data);
        }
    }
}
