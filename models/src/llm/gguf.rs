//! Reading GGUF metadata defensively, and re-quantizing slow tensor types at load time.
//!
//! Metadata comes from a file the operator downloaded: every lookup here returns `Option` or a
//! message instead of panicking, and integer keys accept any integer width (writers differ).
//!
//! Re-quantization exists because candle 0.11.1 has SIMD `vec_dot` kernels for Q4_0, Q8_0 and
//! the K-quants but not for Q4_1, Q5_0 and Q5_1, which then run scalar code several times
//! slower (Warden's own llama pass has a Q4_1 kernel, so there Q4_1 stays as it is). Converting those tensors to Q8_0 (dequantize, quantize) costs a little memory
//! (8.5 bits per weight instead of 5-6) and a little precision (Q8_0 of an already 4-5 bit
//! value is nearly lossless), and makes decoding markedly faster on CPU. candle's model
//! builders read tensors straight from a `Read + Seek` source, so the converted model is
//! written to an in-memory GGUF that the builder then reads.

use std::collections::HashMap;
use std::io::{Cursor, Read, Seek};

use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::Device;

pub(crate) type Metadata = HashMap<String, gguf_file::Value>;

/// A string value.
pub(crate) fn get_str<'a>(md: &'a Metadata, key: &str) -> Option<&'a str> {
    match md.get(key) {
        Some(gguf_file::Value::String(s)) => Some(s.as_str()),
        _ => None,
    }
}

/// A non-negative integer value of any width.
pub(crate) fn get_u64(md: &Metadata, key: &str) -> Option<u64> {
    md.get(key).and_then(value_u64)
}

pub(crate) fn value_u64(v: &gguf_file::Value) -> Option<u64> {
    use gguf_file::Value::*;
    match v {
        U8(v) => Some(*v as u64),
        U16(v) => Some(*v as u64),
        U32(v) => Some(*v as u64),
        U64(v) => Some(*v),
        I8(v) => u64::try_from(*v).ok(),
        I16(v) => u64::try_from(*v).ok(),
        I32(v) => u64::try_from(*v).ok(),
        I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

pub(crate) fn get_bool(md: &Metadata, key: &str) -> Option<bool> {
    match md.get(key) {
        Some(gguf_file::Value::Bool(b)) => Some(*b),
        Some(v) => value_u64(v).map(|n| n != 0),
        None => None,
    }
}

/// A token id: only when it is a valid index.
pub(crate) fn get_token_id(md: &Metadata, key: &str, vocab_size: usize) -> Option<u32> {
    get_u64(md, key).filter(|&id| (id as usize) < vocab_size).and_then(|id| u32::try_from(id).ok())
}

/// An array of strings; `Err` names the key when it is missing or not an array of strings.
pub(crate) fn get_str_array<'a>(md: &'a Metadata, key: &str) -> Result<Vec<&'a str>, String> {
    match md.get(key) {
        Some(gguf_file::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                gguf_file::Value::String(s) => Ok(s.as_str()),
                _ => Err(format!("metadata `{key}` contains a non-string element")),
            })
            .collect(),
        Some(_) => Err(format!("metadata `{key}` is not an array")),
        None => Err(format!("metadata `{key}` is missing")),
    }
}

/// An array of numbers as `f32` (scores), when present.
pub(crate) fn get_f32_array(md: &Metadata, key: &str) -> Option<Vec<f32>> {
    match md.get(key) {
        Some(gguf_file::Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                gguf_file::Value::F32(x) => Some(*x),
                gguf_file::Value::F64(x) => Some(*x as f32),
                other => value_u64(other).map(|n| n as f32),
            })
            .collect(),
        _ => None,
    }
}

/// An array of integers (token types), when present.
pub(crate) fn get_int_array(md: &Metadata, key: &str) -> Option<Vec<u64>> {
    match md.get(key) {
        Some(gguf_file::Value::Array(items)) => items.iter().map(value_u64).collect(),
        _ => None,
    }
}

/// llama.cpp's name for a tensor type (`Q4_K`, not candle's `Q4K`).
pub(crate) fn dtype_name(t: GgmlDType) -> &'static str {
    match t {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

/// Facts about the tensors, for [`crate::ModelInfo`].
#[derive(Debug, Clone)]
pub(crate) struct TensorSummary {
    pub parameters: u64,
    /// The type holding the most weights among matrices (rank >= 2).
    pub dominant: String,
}

pub(crate) fn summarize_tensors(ct: &gguf_file::Content) -> TensorSummary {
    let mut parameters = 0u64;
    let mut by_type: HashMap<&'static str, u64> = HashMap::new();
    for info in ct.tensor_infos.values() {
        let n = info.shape.elem_count() as u64;
        parameters = parameters.saturating_add(n);
        if info.shape.rank() >= 2 {
            *by_type.entry(dtype_name(info.ggml_dtype)).or_default() += n;
        }
    }
    let dominant = by_type
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
        .map(|(name, _)| name.to_string())
        .unwrap_or_else(|| "unknown".to_string());
    TensorSummary { parameters, dominant }
}

/// Types without SIMD kernels in candle 0.11.1 (see the module docs); Q4_1 only when the
/// model runs on candle (Warden's own llama pass has a Q4_1 kernel).
fn is_slow_on_cpu(t: GgmlDType, q4_1: bool) -> bool {
    matches!(t, GgmlDType::Q5_0 | GgmlDType::Q5_1) || (q4_1 && t == GgmlDType::Q4_1)
}

/// Names of the tensors that re-quantization would convert (`q4_1`: Q4_1 tensors too).
pub(crate) fn requantize_candidates(ct: &gguf_file::Content, q4_1: bool) -> Vec<String> {
    let block = GgmlDType::Q8_0.block_size();
    let mut names: Vec<String> = ct
        .tensor_infos
        .iter()
        .filter(|(_, info)| {
            is_slow_on_cpu(info.ggml_dtype, q4_1)
                && info.shape.rank() >= 2
                && info.shape.dims().last().is_some_and(|d| d % block == 0)
        })
        .map(|(name, _)| name.clone())
        .collect();
    names.sort();
    names
}

/// Rewrites the model with the `candidates` converted to Q8_0 into an in-memory GGUF, and
/// returns it with its parsed header. All tensors are read on the CPU.
pub(crate) fn requantize_to_memory<R: Read + Seek>(
    ct: &gguf_file::Content,
    reader: &mut R,
    candidates: &[String],
) -> Result<(gguf_file::Content, Cursor<Vec<u8>>), String> {
    let convert: std::collections::HashSet<&str> = candidates.iter().map(|s| s.as_str()).collect();
    // Read in file order: sequential IO.
    let mut infos: Vec<(&String, &gguf_file::TensorInfo)> = ct.tensor_infos.iter().collect();
    infos.sort_by_key(|(_, info)| info.offset);
    let mut tensors: Vec<(String, QTensor)> = Vec::with_capacity(infos.len());
    for (name, info) in infos {
        let qt = info.read(reader, ct.tensor_data_offset, &Device::Cpu).map_err(|e| format!("tensor `{name}`: {e}"))?;
        let qt = if convert.contains(name.as_str()) {
            let f = qt.dequantize(&Device::Cpu).map_err(|e| format!("tensor `{name}`: {e}"))?;
            QTensor::quantize(&f, GgmlDType::Q8_0).map_err(|e| format!("re-quantizing tensor `{name}`: {e}"))?
        } else {
            qt
        };
        tensors.push((name.clone(), qt));
    }
    // candle's writer always aligns to 32 bytes: drop a different declared alignment.
    let metadata: Vec<(&str, &gguf_file::Value)> =
        ct.metadata.iter().filter(|(k, _)| k.as_str() != "general.alignment").map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let mut buf = Cursor::new(Vec::new());
    gguf_file::write(&mut buf, &metadata, &tensor_refs).map_err(|e| format!("writing the re-quantized model: {e}"))?;
    drop(tensor_refs);
    drop(tensors);
    buf.set_position(0);
    let ct2 = gguf_file::Content::read(&mut buf).map_err(|e| format!("reading the re-quantized model: {e}"))?;
    Ok((ct2, buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Tensor;

    #[test]
    fn metadata_helpers_accept_any_integer_width() {
        let mut md = Metadata::new();
        md.insert("a".into(), gguf_file::Value::U8(7));
        md.insert("b".into(), gguf_file::Value::I32(-1));
        md.insert("c".into(), gguf_file::Value::U64(9));
        md.insert("s".into(), gguf_file::Value::String("x".into()));
        assert_eq!(get_u64(&md, "a"), Some(7));
        assert_eq!(get_u64(&md, "b"), None);
        assert_eq!(get_u64(&md, "c"), Some(9));
        assert_eq!(get_u64(&md, "s"), None);
        assert_eq!(get_str(&md, "s"), Some("x"));
        assert_eq!(get_token_id(&md, "c", 10), Some(9));
        assert_eq!(get_token_id(&md, "c", 9), None);
        assert!(get_str_array(&md, "s").is_err());
        assert!(get_str_array(&md, "missing").is_err());
    }

    #[test]
    fn requantizes_slow_types_in_memory() -> Result<(), Box<dyn std::error::Error>> {
        let dev = Device::Cpu;
        let w: Vec<f32> = (0..64 * 32).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
        let w = Tensor::from_vec(w, (64, 32), &dev)?;
        let q41 = QTensor::quantize(&w, GgmlDType::Q4_1)?;
        let norm = QTensor::quantize(&Tensor::ones(32, candle_core::DType::F32, &dev)?, GgmlDType::F32)?;
        let mut file = Cursor::new(Vec::new());
        let arch = gguf_file::Value::String("llama".into());
        gguf_file::write(&mut file, &[("general.architecture", &arch)], &[("w", &q41), ("n", &norm)])?;
        file.set_position(0);
        let ct = gguf_file::Content::read(&mut file)?;
        let cands = requantize_candidates(&ct, true);
        assert_eq!(cands, vec!["w".to_string()]);
        let (ct2, mut mem) = requantize_to_memory(&ct, &mut file, &cands)?;
        assert_eq!(ct2.tensor_infos["w"].ggml_dtype, GgmlDType::Q8_0);
        assert_eq!(ct2.tensor_infos["n"].ggml_dtype, GgmlDType::F32);
        assert_eq!(get_str(&ct2.metadata, "general.architecture"), Some("llama"));
        let back = ct2.tensor(&mut mem, "w", &dev)?.dequantize(&dev)?;
        let orig = q41.dequantize(&dev)?;
        let err = (back - orig)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(err < 0.02, "re-quantization error {err}");
        let s = summarize_tensors(&ct);
        assert_eq!(s.parameters, 64 * 32 + 32);
        assert_eq!(s.dominant, "Q4_1");
        Ok(())
    }
}
