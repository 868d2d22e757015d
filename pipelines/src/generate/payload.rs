//! The generators' events as Kafka record values: the JSON payload as
//! generated, or Avro of the writer schema a pipeline's source declares
//! (its `avro:` options) or derives from its fields, Confluent-framed or
//! plain. `smack generate --format avro` and `smack bench` write these;
//! [`LineSink`] writes the JSON ones as lines, to stdout or files.

use super::{GeneratedEvent, GeneratorKind};
use crate::runtime::schema::{record_format, source_schema};
use crate::spec::{PipelineSpec, Source, SpecErrors};
use smack_connectors::format::avro::confluent_header;
use smack_connectors::format::{AvroEncoder, AvroFormat, AvroFraming, AvroSchema, AvroSchemaError, RecordFormat};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

/// The Avro framing of a record value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// Magic byte 0, a 4-byte schema id, the datum.
    Confluent,
    /// The datum alone.
    Plain,
}

/// Why events cannot be written as Avro.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The pipeline file could not be read.
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// An output file could not be created.
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The pipeline file is not valid.
    #[error("{0}")]
    Invalid(#[from] SpecErrors),
    /// The pipeline has no source the generator writes.
    #[error("{file} has no source `{source_name}`, which the {generator} generator writes")]
    NoSource { file: String, source_name: String, generator: &'static str },
    /// A source's record format options are not usable.
    #[error("{file}: source `{source_name}`: {message}")]
    Format { file: String, source_name: String, message: String },
    /// No Avro schema can be derived from a source's fields.
    #[error("the Avro schema of source `{source_name}` in {file}: {source}")]
    Schema {
        file: String,
        source_name: String,
        #[source]
        source: AvroSchemaError,
    },
    /// An event of a source no encoder was made for.
    #[error("no Avro schema for source `{0}`")]
    UnknownSource(String),
    /// A generated payload that is not the JSON object it should be.
    #[error("re-reading generated event {payload}: {source}")]
    Reread {
        payload: String,
        #[source]
        source: serde_json::Error,
    },
    /// The event does not fit its source's writer schema.
    #[error("source `{source_name}`: {message}")]
    Encode { source_name: String, message: String },
}

/// The examples' pipeline files, whose sources give the writer schemas when
/// no other file is named.
pub const FRAUD_PIPELINE: &str = include_str!("../../../examples/fraud-detection/pipeline.yaml");
pub const AD_TECH_PIPELINE: &str = include_str!("../../../examples/ad-tech/pipeline.yaml");

/// Writes generated events as Avro: one encoder per source.
pub struct AvroPayloads {
    /// Per source: its encoder and the bytes before each datum.
    encoders: BTreeMap<String, (AvroEncoder, Vec<u8>)>,
}

impl AvroPayloads {
    /// The writer schemas of `kind`'s sources, from the pipeline file
    /// (the example's when `pipeline` is None): a source's own `avro:`
    /// options (writer schema, framing, schema id) where it has them, else
    /// the schema derived from its fields, framed by `wire` with `schema_id`.
    pub fn new(
        kind: GeneratorKind,
        pipeline: Option<&Path>,
        wire: WireFormat,
        schema_id: u32,
    ) -> Result<Self, PayloadError> {
        let (text, file) = match pipeline {
            Some(p) => (
                std::fs::read_to_string(p).map_err(|source| PayloadError::Read { path: p.to_path_buf(), source })?,
                p.display().to_string(),
            ),
            None => match kind {
                GeneratorKind::Fraud => (FRAUD_PIPELINE.to_string(), "examples/fraud-detection/pipeline.yaml".into()),
                GeneratorKind::AdTech => (AD_TECH_PIPELINE.to_string(), "examples/ad-tech/pipeline.yaml".into()),
            },
        };
        let spec = PipelineSpec::from_yaml(&text, &file)?;
        let flags = AvroFormat {
            framing: match wire {
                WireFormat::Confluent => AvroFraming::Confluent,
                WireFormat::Plain => AvroFraming::Plain,
            },
            writer: None,
            schema_id: Some(schema_id),
        };
        let mut encoders = BTreeMap::new();
        for name in kind.sources() {
            let Some(source) = spec.sources.get(*name) else {
                return Err(PayloadError::NoSource { file, source_name: name.to_string(), generator: kind.name() });
            };
            let Source::Kafka(k) = source;
            let format = record_format(k).map_err(|message| PayloadError::Format {
                file: file.clone(),
                source_name: name.to_string(),
                message,
            })?;
            let mut format = match format {
                RecordFormat::Avro(f) if k.avro.is_some() => f,
                _ => flags.clone(),
            };
            let writer =
                match format.writer.take() {
                    Some(w) => w,
                    None => AvroSchema::derive(name, &source_schema(source)).map_err(|source| {
                        PayloadError::Schema { file: file.clone(), source_name: name.to_string(), source }
                    })?,
                };
            let header = match format.framing {
                AvroFraming::Confluent => confluent_header(format.schema_id.unwrap_or(schema_id)).to_vec(),
                AvroFraming::Plain => Vec::new(),
            };
            encoders.insert(name.to_string(), (AvroEncoder::new(writer), header));
        }
        Ok(AvroPayloads { encoders })
    }

    /// The Avro record of an event; a malformed one is a datum cut short
    /// (half of a record holding only the event time), which never decodes.
    pub fn encode(&self, ev: &GeneratedEvent) -> Result<Vec<u8>, PayloadError> {
        let Some((enc, header)) = self.encoders.get(ev.source) else {
            return Err(PayloadError::UnknownSource(ev.source.to_string()));
        };
        let mut out = header.clone();
        if ev.malformed {
            let ts = serde_json::json!({ "ts": ev.event_time_ms });
            if enc.encode(ts.as_object().expect("an object"), &mut out).is_err() {
                out.truncate(header.len()); // a writer schema with other required fields: an empty datum
            }
            let datum = out.len() - header.len();
            out.truncate(header.len() + datum / 2);
            return Ok(out);
        }
        let record: serde_json::Map<String, serde_json::Value> =
            serde_json::from_slice(&ev.payload).map_err(|source| PayloadError::Reread {
                payload: String::from_utf8_lossy(&ev.payload).into_owned(),
                source,
            })?;
        enc.encode(&record, &mut out)
            .map_err(|message| PayloadError::Encode { source_name: ev.source.to_string(), message })?;
        Ok(out)
    }
}

/// Where generated events go as lines (`PAYLOAD`, or `KEY<SEP>PAYLOAD` for
/// `kcat -K<SEP>`): stdout, one file, or one file per source.
pub enum LineSink {
    One(Box<dyn Write>),
    PerSource(BTreeMap<&'static str, (PathBuf, BufWriter<File>)>),
}

impl LineSink {
    /// Stdout when `output` is None; else that file, or one file per
    /// source of `sources` when the name holds `{source}`.
    pub fn open(output: Option<&Path>, sources: &[&'static str]) -> Result<LineSink, PayloadError> {
        let Some(path) = output else {
            return Ok(LineSink::One(Box::new(BufWriter::with_capacity(1 << 16, std::io::stdout()))));
        };
        let create =
            |p: &Path| File::create(p).map_err(|source| PayloadError::Create { path: p.to_path_buf(), source });
        let text = path.to_string_lossy();
        if !text.contains("{source}") {
            return Ok(LineSink::One(Box::new(BufWriter::with_capacity(1 << 16, create(path)?))));
        }
        let mut files = BTreeMap::new();
        for &s in sources {
            let p = PathBuf::from(text.replace("{source}", s));
            let f = BufWriter::with_capacity(1 << 16, create(&p)?);
            files.insert(s, (p, f));
        }
        Ok(LineSink::PerSource(files))
    }

    /// Writes one event's line (nothing for a source without a file).
    pub fn write(&mut self, ev: &GeneratedEvent, sep: Option<&[u8]>) -> std::io::Result<()> {
        let w: &mut dyn Write = match self {
            LineSink::One(w) => w,
            LineSink::PerSource(files) => match files.get_mut(ev.source) {
                Some((_, w)) => w,
                None => return Ok(()),
            },
        };
        if let Some(sep) = sep {
            w.write_all(ev.key.as_bytes())?;
            w.write_all(sep)?;
        }
        w.write_all(&ev.payload)?;
        w.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        match self {
            LineSink::One(w) => w.flush(),
            LineSink::PerSource(files) => files.values_mut().try_for_each(|(_, w)| w.flush()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Generator, Options};
    use smack_connectors::format::{to_json_rows, Decoder};

    #[test]
    fn avro_records_decode_as_the_pipeline_reads_them_and_malformed_ones_do_not() {
        let options = Options { seed: 3, count: Some(3000), malformed_share: 0.01, ..Options::default() };
        for (kind, text) in [(GeneratorKind::Fraud, FRAUD_PIPELINE), (GeneratorKind::AdTech, AD_TECH_PIPELINE)] {
            let spec = PipelineSpec::from_yaml(text, "example").unwrap();
            for (wire, framing) in
                [(WireFormat::Confluent, AvroFraming::Confluent), (WireFormat::Plain, AvroFraming::Plain)]
            {
                let avro = AvroPayloads::new(kind, None, wire, 9).unwrap();
                let (mut good, mut bad) = (0, 0);
                for ev in Generator::new(kind, &options).unwrap() {
                    let schema = source_schema(&spec.sources[ev.source]);
                    let json = Decoder::new(RecordFormat::Json, schema.clone()).unwrap();
                    let fmt = AvroFormat {
                        framing,
                        schema_id: (framing == AvroFraming::Confluent).then_some(9),
                        writer: None,
                    };
                    let avro_dec = Decoder::new(RecordFormat::Avro(fmt), schema).unwrap();
                    let bytes = avro.encode(&ev).unwrap();
                    let (a, j) = (avro_dec.decode([bytes.as_slice()]), json.decode([ev.payload.as_slice()]));
                    if ev.malformed {
                        assert_eq!((a.errors.len(), j.errors.len()), (1, 1), "{ev:?}");
                        bad += 1;
                    } else {
                        assert!(a.errors.is_empty(), "{:?} {ev:?}", a.errors);
                        assert_eq!(to_json_rows(&a.batch).unwrap(), to_json_rows(&j.batch).unwrap());
                        good += 1;
                    }
                }
                assert!(good > 2000 && bad > 0, "{good} {bad}");
            }
        }
    }

    #[test]
    fn a_pipeline_files_own_avro_options_decide_the_records() {
        let avro = "    format: avro\n    avro:\n      wire-format: plain\n      schema:\n        type: record\n        name: Tx\n        fields:\n          - { name: ts, type: { type: long, logicalType: timestamp-millis } }\n          - { name: note, type: [\"null\", string] }\n          - { name: country, type: string }\n          - { name: merchant, type: string }\n          - { name: amount, type: double }\n          - { name: card_id, type: string }\n";
        let text = FRAUD_PIPELINE.replacen("    format: json\n", avro, 1);
        assert_ne!(text, FRAUD_PIPELINE);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, &text).unwrap();
        let spec = PipelineSpec::from_yaml(&text, "p.yaml").unwrap();
        let Source::Kafka(k) = &spec.sources["transactions"];
        let decoder = Decoder::new(record_format(k).unwrap(), source_schema(&spec.sources["transactions"])).unwrap();
        let json = Decoder::new(RecordFormat::Json, source_schema(&spec.sources["transactions"])).unwrap();
        let payloads = AvroPayloads::new(GeneratorKind::Fraud, Some(&path), WireFormat::Confluent, 1).unwrap();
        let options = Options { seed: 4, count: Some(500), malformed_share: 0.02, ..Options::default() };
        for ev in Generator::new(GeneratorKind::Fraud, &options).unwrap() {
            let bytes = payloads.encode(&ev).unwrap();
            let got = decoder.decode([bytes.as_slice()]);
            if ev.malformed {
                assert_eq!(got.errors.len(), 1, "{ev:?}");
            } else {
                let want = json.decode([ev.payload.as_slice()]);
                assert_eq!(to_json_rows(&got.batch).unwrap(), to_json_rows(&want.batch).unwrap());
            }
        }
    }
}
