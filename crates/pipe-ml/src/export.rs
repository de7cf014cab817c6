//! Byte-stable `.safetensors` exports.
//!
//! burn-store hands the `__metadata__` map to the safetensors crate as a `HashMap`, whose
//! iteration order is randomised per map, so two exports of the same weights differed byte-wise
//! (and so did the digest of every model directory). [`sort_header`] rewrites the JSON header of
//! a written file with its keys in sorted order; the header keeps its length (same entries,
//! same compact JSON), so the tensor data after it is untouched.

use crate::backend::MlError;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// Reorders the header of the safetensors file at `path`: top-level entries and the
/// `__metadata__` map by key. Idempotent.
pub fn sort_header(path: &Path) -> Result<(), MlError> {
    let corrupt = |message: String| MlError::Record {
        path: path.to_path_buf(),
        message,
    };
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(MlError::io(path))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len).map_err(MlError::io(path))?;
    let len = usize::try_from(u64::from_le_bytes(len))
        .map_err(|_| corrupt("header length does not fit in memory".into()))?;
    let file_len = file.metadata().map_err(MlError::io(path))?.len();
    if len as u64 > file_len.saturating_sub(8) {
        return Err(corrupt(format!(
            "header length {len} exceeds the file ({file_len} bytes)"
        )));
    }
    let mut header = vec![0u8; len];
    file.read_exact(&mut header).map_err(MlError::io(path))?;
    // BTreeMaps at both levels fix the order whatever serde_json's map type is.
    let mut entries: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| corrupt(format!("safetensors header: {e}")))?;
    let metadata = match entries.remove("__metadata__") {
        Some(m) => Some(
            serde_json::from_value::<BTreeMap<String, String>>(m)
                .map_err(|e| corrupt(format!("safetensors __metadata__: {e}")))?,
        ),
        None => None,
    };
    let mut sorted = Vec::with_capacity(len);
    sorted.push(b'{');
    let mut first = true;
    let mut push = |key: &str, value: &serde_json::Value| -> Result<(), MlError> {
        if !first {
            sorted.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut sorted, key).map_err(|e| corrupt(e.to_string()))?;
        sorted.push(b':');
        serde_json::to_writer(&mut sorted, value).map_err(|e| corrupt(e.to_string()))
    };
    if let Some(m) = &metadata {
        let m = serde_json::to_value(m).map_err(|e| corrupt(e.to_string()))?;
        push("__metadata__", &m)?;
    }
    for (k, v) in &entries {
        push(k, v)?;
    }
    sorted.push(b'}');
    if sorted.len() > len {
        return Err(corrupt(format!(
            "sorted header is {} bytes, longer than the original {len}",
            sorted.len()
        )));
    }
    // safetensors pads the header with spaces to its declared length.
    sorted.resize(len, b' ');
    if sorted != header {
        file.seek(SeekFrom::Start(8)).map_err(MlError::io(path))?;
        file.write_all(&sorted).map_err(MlError::io(path))?;
        file.sync_data().map_err(MlError::io(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file with one f32 tensor and the given raw header JSON.
    fn file_with_header(dir: &Path, header: &str) -> std::path::PathBuf {
        let mut h = header.as_bytes().to_vec();
        h.resize(h.len().next_multiple_of(8), b' ');
        let mut bytes = (h.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(&h);
        bytes.extend_from_slice(&[0u8; 8]);
        let p = dir.join("w.safetensors");
        std::fs::write(&p, &bytes).unwrap();
        p
    }

    #[test]
    fn metadata_in_any_order_gives_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let t = r#""w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#;
        let orders = [
            r#"{"version":"0.22.1","format":"safetensors","producer":"burn"}"#,
            r#"{"producer":"burn","version":"0.22.1","format":"safetensors"}"#,
        ];
        let mut outputs = Vec::new();
        for m in orders {
            let p = file_with_header(dir.path(), &format!(r#"{{"__metadata__":{m},{t}}}"#));
            sort_header(&p).unwrap();
            let once = std::fs::read(&p).unwrap();
            sort_header(&p).unwrap();
            assert_eq!(std::fs::read(&p).unwrap(), once, "idempotent");
            outputs.push(once);
        }
        assert_eq!(outputs[0], outputs[1]);
        let text = String::from_utf8_lossy(&outputs[0]);
        assert!(
            text.contains(r#"{"format":"safetensors","producer":"burn","version":"0.22.1"}"#),
            "{text}"
        );
        // Still a valid file with the same tensor.
        let st = safetensors::SafeTensors::deserialize(&outputs[0]).unwrap();
        assert_eq!(st.tensor("w").unwrap().shape(), &[2]);
    }

    #[test]
    fn a_damaged_header_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, u64::MAX.to_le_bytes()).unwrap();
        let e = sort_header(&p).unwrap_err().to_string();
        assert!(e.contains("bad.safetensors"), "{e}");
    }
}
