//! `cedargate apikey`: create, revoke and list API keys in a key file (`api_keys.file`).
//!
//! `create` prints the new key once, on stdout, and stores only its id, salt and hash with the
//! principal, attributes, parents and expiry (`cedargate_core::api_keys`). Every write replaces
//! the file atomically (a temporary file in the same folder, mode 0600, renamed over it), so a
//! watching `serve` never reads half a file. Never prints a hash or salt.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use crate::CliError;
use cedargate_core::api_keys::{KeyFile, generate, parse_uid};

/// Arguments of `cedargate apikey`.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiKeyArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: ApiKeyCommand,
}

/// `cedargate apikey` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum ApiKeyCommand {
    /// Create a key; prints it once (store it in the caller's secret store: it is not kept).
    Create {
        /// The Cedar principal the key stands for, e.g. 'Service::"billing"'.
        #[arg(long)]
        principal: String,
        /// An attribute of the principal: `name=text` (a string) or `name:=json` (any Cedar
        /// JSON value: 3, true, ["a"]). Repeatable.
        #[arg(long = "attr", value_name = "K=V")]
        attributes: Vec<String>,
        /// A parent of the principal, e.g. 'Team::"payments"'. Repeatable.
        #[arg(long = "parent", value_name = "UID")]
        parents: Vec<String>,
        /// Stop accepting the key after this long (`90d`, `12h`).
        #[arg(long, value_name = "DURATION", conflicts_with = "expires")]
        expires_in: Option<humantime::Duration>,
        /// Stop accepting the key at this time (RFC 3339, `2027-01-31T00:00:00Z`).
        #[arg(long, value_name = "TIME")]
        expires: Option<String>,
        /// Free text kept with the key (who holds it, why).
        #[arg(long)]
        note: Option<String>,
        /// The key file (created when missing).
        #[arg(long)]
        file: PathBuf,
    },
    /// Mark a key revoked: refused from now on (`api_key_revoked`), still listed.
    Revoke {
        /// The key's public id (the 12 hex digits after `cgk_`).
        #[arg(long)]
        id: String,
        /// The key file.
        #[arg(long)]
        file: PathBuf,
    },
    /// Remove a key from the file (refused from now on as `api_key_unknown`).
    Remove {
        /// The key's public id.
        #[arg(long)]
        id: String,
        /// The key file.
        #[arg(long)]
        file: PathBuf,
    },
    /// List the keys: id, principal, expiry, state (never a secret, salt or hash).
    List {
        /// The key file.
        #[arg(long)]
        file: PathBuf,
    },
}

/// Runs `cedargate apikey`.
pub fn run(args: &ApiKeyArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, CliError> {
    match &args.command {
        ApiKeyCommand::Create {
            principal,
            attributes,
            parents,
            expires_in,
            expires,
            note,
            file,
        } => {
            let mut keys = read(file, true)?;
            let principal = parse_uid(principal).map_err(CliError::Usage)?;
            let (key, mut entry) = generate(principal)
                .map_err(|_| CliError::Usage("the system random generator failed".into()))?;
            for attribute in attributes {
                let (name, value) = attribute_value(attribute)?;
                entry.attributes.insert(name, value);
            }
            for parent in parents {
                entry
                    .parents
                    .push(parse_uid(parent).map_err(CliError::Usage)?);
            }
            let now = SystemTime::now();
            entry.created = Some(humantime::format_rfc3339_seconds(now).to_string());
            entry.expires = match (expires_in, expires) {
                (Some(d), _) => {
                    Some(humantime::format_rfc3339_seconds(now + Duration::from(*d)).to_string())
                }
                (None, Some(at)) => {
                    humantime::parse_rfc3339(at).map_err(|_| {
                        CliError::Usage(format!(
                            "--expires `{at}` is not an RFC 3339 time (2027-01-31T00:00:00Z)"
                        ))
                    })?;
                    Some(at.clone())
                }
                (None, None) => None,
            };
            entry.note = note.clone();
            let id = entry.id.clone();
            keys.keys.push(entry);
            write(file, &keys)?;
            writeln!(out, "{key}").map_err(CliError::write("the key"))?;
            writeln!(
                err,
                "created key {id} in {}: the key above is shown only now",
                file.display()
            )
            .map_err(CliError::write("the report"))?;
            Ok(true)
        }
        ApiKeyCommand::Revoke { id, file } | ApiKeyCommand::Remove { id, file } => {
            let mut keys = read(file, false)?;
            let Some(at) = keys.keys.iter().position(|k| k.id == *id) else {
                return Err(CliError::Usage(format!(
                    "no key {id} in {}",
                    file.display()
                )));
            };
            let done = if matches!(args.command, ApiKeyCommand::Revoke { .. }) {
                if let Some(k) = keys.keys.get_mut(at) {
                    k.revoked = true;
                }
                "revoked"
            } else {
                keys.keys.remove(at);
                "removed"
            };
            write(file, &keys)?;
            writeln!(err, "{done} key {id} in {}", file.display())
                .map_err(CliError::write("the report"))?;
            Ok(true)
        }
        ApiKeyCommand::List { file } => {
            let keys = read(file, false)?;
            for k in &keys.keys {
                let uid = format!(
                    "{}::{}",
                    k.principal.entity_type,
                    Value::from(k.principal.id.as_str())
                );
                let state = if k.revoked { "revoked" } else { "active" };
                writeln!(
                    out,
                    "{}  {uid}  expires {}  {state}{}",
                    k.id,
                    k.expires.as_deref().unwrap_or("never"),
                    k.note
                        .as_deref()
                        .map(|n| format!("  ({n})"))
                        .unwrap_or_default()
                )
                .map_err(CliError::write("the list"))?;
            }
            Ok(true)
        }
    }
}

fn attribute_value(text: &str) -> Result<(String, Value), CliError> {
    if let Some((name, json)) = text.split_once(":=") {
        let value = serde_json::from_str(json)
            .map_err(|e| CliError::Usage(format!("--attr {text}: `{json}` is not JSON ({e})")))?;
        return Ok((name.to_string(), value));
    }
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => {
            Ok((name.to_string(), Value::from(value.to_string())))
        }
        _ => Err(CliError::Usage(format!(
            "--attr `{text}`: write name=text or name:=json"
        ))),
    }
}

fn read(file: &Path, create: bool) -> Result<KeyFile, CliError> {
    match std::fs::read_to_string(file) {
        Ok(text) => KeyFile::parse(&text, file).map_err(|e| CliError::Usage(e.to_string())),
        Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::new()),
        Err(e) => Err(CliError::Usage(format!(
            "{}: {}",
            file.display(),
            cedargate_core::config::io_words(&e)
        ))),
    }
}

fn write(file: &Path, keys: &KeyFile) -> Result<(), CliError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let what = || format!("{}", file.display());
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(keys.to_text().as_bytes())?;
            f.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, file));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(CliError::write(what()))
}
