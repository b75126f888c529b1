//! `cedargate bundle`: pack a policy folder into a signed bundle for `policy_bundle`, and check
//! one. `build` packs what cedargate reads (policies, schema, `entities.json`, `tests/`) after
//! loading it as `serve` would; `sign` writes a detached signature; `verify` checks a bundle and
//! its signature exactly as `serve` does before unpacking; `keygen` makes a key pair.
//!
//! The format, the checks and the signatures are the core's ([`cedargate_core::bundle`],
//! [`cedargate_core::bundle_signature`]); this module reads and writes files and prints.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cedargate_core::bundle::{self, DEFAULT_LIMITS, TESTS_DIR};
use cedargate_core::bundle_signature::{self, Algorithm, PublicKey};
use cedargate_core::policy::PolicySnapshot;

use crate::CliError;

/// `cedargate bundle …`.
#[derive(Debug, clap::Args)]
pub struct BundleArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: BundleCommand,
}

/// The bundle subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum BundleCommand {
    /// Pack a policy folder (policies, schema, entities.json, tests/) into a .tar.gz bundle.
    Build {
        /// The policy folder.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// The bundle file to write.
        #[arg(short, long)]
        output: PathBuf,
        /// The revision to record (a git commit or tag); default: a hash of the files.
        #[arg(long)]
        revision: Option<String>,
    },
    /// Sign a bundle: writes BUNDLE.sig (or --output) with a PKCS#8 PEM private key.
    Sign {
        /// The private key (Ed25519 or P-256, PKCS#8 PEM).
        #[arg(long)]
        key: PathBuf,
        /// The bundle.
        bundle: PathBuf,
        /// The signature file to write; default: BUNDLE.sig.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Check a bundle and its signature as `serve` does; exit 1 if it would be refused.
    Verify {
        /// A trusted public key (PEM); repeat for several (a key rotation).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// The bundle.
        bundle: PathBuf,
        /// Its signature; default: BUNDLE.sig.
        #[arg(long)]
        signature: Option<PathBuf>,
    },
    /// Make a signing key pair: PREFIX.key.pem (private, mode 0600) and PREFIX.pub.pem.
    Keygen {
        /// The algorithm.
        #[arg(long, value_enum, default_value_t = KeyAlgorithm::Ed25519)]
        algorithm: KeyAlgorithm,
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `keygen --algorithm`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KeyAlgorithm {
    /// Ed25519 (EdDSA).
    Ed25519,
    /// ES256 (ECDSA P-256 with SHA-256).
    Es256,
}

/// Runs a bundle subcommand; `Ok(false)` when it found a problem and printed it.
pub fn run(args: &BundleArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<bool, CliError> {
    let result = match &args.command {
        BundleCommand::Build {
            policies,
            output,
            revision,
        } => build(policies, output, revision.as_deref(), out, err),
        BundleCommand::Sign {
            key,
            bundle,
            output,
        } => sign(key, bundle, output.as_deref(), out),
        BundleCommand::Verify {
            keys,
            bundle,
            signature,
        } => verify(keys, bundle, signature.as_deref(), out),
        BundleCommand::Keygen {
            algorithm,
            out: prefix,
        } => keygen(*algorithm, prefix, out),
    };
    match result {
        Ok(()) => Ok(true),
        Err(Problem(message)) => {
            writeln!(err, "error: {message}").map_err(write_error("stderr"))?;
            Ok(false)
        }
    }
}

/// A problem to print (exit 1).
struct Problem(String);

fn read(path: &Path) -> Result<Vec<u8>, Problem> {
    std::fs::read(path).map_err(|e| {
        Problem(format!(
            "{}: {}",
            path.display(),
            cedargate_core::config::io_words(&e)
        ))
    })
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Problem> {
    std::fs::write(path, bytes).map_err(|e| Problem(format!("{}: {e}", path.display())))
}

fn write_error(what: &str) -> impl FnOnce(std::io::Error) -> CliError {
    let what = what.to_string();
    move |source| CliError::Write { what, source }
}

fn say(out: &mut dyn Write, text: String) -> Result<(), Problem> {
    writeln!(out, "{text}").map_err(|e| Problem(format!("writing to stdout: {e}")))
}

fn build(
    dir: &Path,
    output: &Path,
    revision: Option<&str>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<(), Problem> {
    // What `serve` would refuse is never packed.
    cedargate_core::policy_folder::check(dir)
        .and_then(|()| PolicySnapshot::load(dir).map(|_| ()))
        .map_err(|e| Problem(format!("the policy folder does not load:\n{e}")))?;
    let mut files = BTreeMap::new();
    let mut skipped = Vec::new();
    collect(dir, "", &mut files, &mut skipped)?;
    for path in &skipped {
        let _ = writeln!(err, "note: not packed (cedargate does not read it): {path}");
    }
    let revision = match revision {
        Some(r) => r.to_string(),
        None => {
            let mut all = Vec::new();
            for (path, content) in &files {
                all.extend_from_slice(path.as_bytes());
                all.push(0);
                all.extend_from_slice(&bundle::sha256_hex(content).into_bytes());
            }
            bundle::sha256_hex(&all).chars().take(12).collect()
        }
    };
    let archive = bundle::build(&revision, SystemTime::now(), &files, &DEFAULT_LIMITS)
        .map_err(|e| Problem(e.to_string()))?;
    write(output, &archive)?;
    say(
        out,
        format!(
            "built {}: revision {revision}, {} files, sha256:{}",
            output.display(),
            files.len(),
            bundle::sha256_hex(&archive)
        ),
    )
}

/// The files under `dir` (prefix `rel`) that cedargate reads, by relative path; the rest in
/// `skipped`. Links are followed (their content is packed as a plain file).
fn collect(
    dir: &Path,
    rel: &str,
    files: &mut BTreeMap<String, Vec<u8>>,
    skipped: &mut Vec<String>,
) -> Result<(), Problem> {
    let entries = std::fs::read_dir(dir).map_err(|e| Problem(format!("{}: {e}", dir.display())))?;
    let mut paths: Vec<PathBuf> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            skipped.push(path.display().to_string());
            continue;
        };
        let relative = format!("{rel}{name}");
        if path.is_dir() {
            if relative == TESTS_DIR || relative.starts_with("tests/") {
                collect(&path, &format!("{relative}/"), files, skipped)?;
            } else {
                skipped.push(format!("{relative}/"));
            }
        } else if bundle::path_problem(&relative).is_none() {
            files.insert(relative, read(&path)?);
        } else {
            skipped.push(relative);
        }
    }
    Ok(())
}

fn sign(
    key: &Path,
    bundle_file: &Path,
    output: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), Problem> {
    let archive = read(bundle_file)?;
    let private = read(key)?;
    let signature = bundle_signature::sign(&archive, &private)
        .map_err(|e| Problem(format!("{}: {e}", key.display())))?;
    let target = output.map_or_else(|| default_signature(bundle_file), Path::to_path_buf);
    write(&target, &signature)?;
    let key_id = bundle_signature::key_id_of(&private).unwrap_or_default();
    say(
        out,
        format!(
            "signed {} with key {key_id}: {}",
            bundle_file.display(),
            target.display()
        ),
    )
}

fn default_signature(bundle_file: &Path) -> PathBuf {
    let mut name = bundle_file.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

fn verify(
    key_files: &[PathBuf],
    bundle_file: &Path,
    signature: Option<&Path>,
    out: &mut dyn Write,
) -> Result<(), Problem> {
    let keys = key_files
        .iter()
        .map(|f| {
            PublicKey::from_pem(&read(f)?).map_err(|e| Problem(format!("{}: {e}", f.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let archive = read(bundle_file)?;
    let signature_file =
        signature.map_or_else(|| default_signature(bundle_file), Path::to_path_buf);
    let signature = std::fs::read(&signature_file).ok();
    let refused =
        |e: &dyn std::fmt::Display| Problem(format!("{}: refused: {e}", bundle_file.display()));
    let key_id =
        bundle_signature::verify(&archive, signature.as_deref(), &keys).map_err(|e| refused(&e))?;
    let checked = bundle::unpack(&archive, &DEFAULT_LIMITS).map_err(|e| refused(&e))?;
    say(
        out,
        format!(
            "ok: {} revision {}, created {}, {} files, sha256:{}, signed by key {key_id}",
            bundle_file.display(),
            checked.manifest.revision,
            checked.manifest.created,
            checked.files.len(),
            checked.digest
        ),
    )
}

fn keygen(algorithm: KeyAlgorithm, prefix: &Path, out: &mut dyn Write) -> Result<(), Problem> {
    let algorithm = match algorithm {
        KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
        KeyAlgorithm::Es256 => Algorithm::ES256,
    };
    let (private, public) =
        bundle_signature::generate(algorithm).map_err(|e| Problem(e.to_string()))?;
    let with = |suffix: &str| {
        let mut name = prefix.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (private_file, public_file) = (with(".key.pem"), with(".pub.pem"));
    write_private(&private_file, private.as_bytes())?;
    write(&public_file, public.as_bytes())?;
    let key_id = bundle_signature::key_id_of(public.as_bytes()).unwrap_or_default();
    say(
        out,
        format!(
            "key {key_id}: private {} (keep it secret: it signs bundles), public {} (list it in policy_bundle.public_key_files)",
            private_file.display(),
            public_file.display()
        ),
    )
}

/// Creates `path` readable by its owner only; never overwrites a key.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), Problem> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            Problem(format!(
                "{}: {e} (an existing key is never overwritten)",
                path.display()
            ))
        })?;
    file.write_all(bytes)
        .map_err(|e| Problem(format!("{}: {e}", path.display())))
}
