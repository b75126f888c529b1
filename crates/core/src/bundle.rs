//! Policy bundles: a policy folder (policies, schema, entities, policy tests) packed into one
//! gzip-compressed tar with a manifest, and the checks that make such a file safe to unpack.
//!
//! A bundle is `manifest.json` (first entry: format, revision, created time, and the size and
//! SHA-256 of every file) followed by the files, at their paths relative to the policy folder.
//! Its *digest* is the SHA-256 of the whole archive; that digest is what a signature covers
//! ([`crate::bundle_signature`]) and what `/policy` and the metrics name.
//!
//! [`unpack`] refuses, with a reason naming the entry, anything that is not a plain file or
//! folder (links, devices), any path that is absolute, climbs (`..`) or is not one cedargate
//! reads, duplicates, files or archives over the [`Limits`], and any file whose size or digest
//! differs from the manifest, or that the manifest does not list. Pure: bytes in, bytes out; the
//! server writes the files and the CLI reads the folder.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// The static entities file of a policy folder: the one file name its layout fixes (policies and
/// the schema go by extension).
pub const ENTITIES_FILE: &str = "entities.json";

/// The manifest's name inside a bundle; always the first entry.
pub const MANIFEST: &str = "manifest.json";

/// The `format` a manifest of this version carries; another value is refused, so a future
/// format is never half-read.
pub const FORMAT: &str = "cedargate-bundle/v1";

/// Where policy tests live inside a policy folder (and a bundle).
pub const TESTS_DIR: &str = "tests";

/// The bounds an archive is checked against. A bundle comes over the network: each bound keeps a
/// hostile or broken one from filling memory or disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The compressed archive.
    pub max_archive_bytes: u64,
    /// The uncompressed tar stream (headers included): bounds a gzip bomb.
    pub max_unpacked_bytes: u64,
    /// One file.
    pub max_file_bytes: u64,
    /// Files in the bundle.
    pub max_files: usize,
}

/// The default bounds: policy folders are text, a large one is a few megabytes; these leave
/// room for ten times that.
pub const DEFAULT_LIMITS: Limits = Limits {
    max_archive_bytes: 32 * 1024 * 1024,
    max_unpacked_bytes: 128 * 1024 * 1024,
    max_file_bytes: 32 * 1024 * 1024,
    max_files: 10_000,
};

/// Longest path inside a bundle, in bytes: a bound on what a path check and a log line carry.
const MAX_PATH_BYTES: usize = 512;

/// Largest manifest: 10,000 files at ~150 bytes each.
const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;

/// A bundle's manifest: what it is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The publisher's name for this version (a git commit, a tag, a build number): shown on
    /// `/policy` and in the metrics, so a fleet can be compared by it.
    pub revision: String,
    /// When the bundle was built (RFC 3339).
    pub created: String,
    /// Every file, sorted by path.
    pub files: Vec<ManifestFile>,
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFile {
    /// Relative path, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
}

/// A checked bundle: its manifest, its digest and its files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The manifest, as checked.
    pub manifest: Manifest,
    /// SHA-256 of the whole archive, lower-case hex.
    pub digest: String,
    /// Relative path → content, every one listed in the manifest with its size and digest.
    pub files: BTreeMap<String, Vec<u8>>,
}

/// Why a bundle was refused (or could not be built).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    /// Over one of the [`Limits`].
    #[error("{what} is over the limit of {limit} bytes")]
    TooLarge {
        /// What is too large.
        what: String,
        /// The limit.
        limit: u64,
    },
    /// More files than [`Limits::max_files`].
    #[error("the bundle has more than {0} files")]
    TooManyFiles(usize),
    /// Not a gzip-compressed tar, or cut short.
    #[error("the bundle is not a readable tar.gz (truncated or corrupt): {0}")]
    Corrupt(String),
    /// An entry that is not a plain file or folder.
    #[error("`{path}` is a {kind}: bundles hold only plain files")]
    NotAFile {
        /// The entry.
        path: String,
        /// What it is instead.
        kind: &'static str,
    },
    /// A path that is absolute, climbs out, or is not one cedargate reads.
    #[error("`{path}`: {why}")]
    BadPath {
        /// The path as found.
        path: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// The same path twice.
    #[error("`{0}` appears twice in the bundle")]
    Duplicate(String),
    /// The manifest is missing, not first, or unreadable.
    #[error("manifest.json: {0}")]
    Manifest(String),
    /// A file whose size or digest is not the manifest's.
    #[error(
        "`{path}` does not match the manifest: {why} (the bundle was altered after it was built)"
    )]
    Mismatch {
        /// The file.
        path: String,
        /// What differs.
        why: String,
    },
    /// A file the manifest lists that the archive lacks.
    #[error("`{0}` is listed in the manifest but missing from the bundle")]
    Missing(String),
}

/// SHA-256 of `bytes`, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether cedargate reads the file at `path` (relative, `/`-separated) of a policy folder:
/// `*.cedar`, `*.cedarschema` and `entities.json` at the top, policy tests (`*.yaml`, `*.yml`)
/// under `tests/`. What `bundle build` packs and the only paths `unpack` accepts.
pub fn is_policy_file(path: &str) -> bool {
    match path.split_once('/') {
        None => path == ENTITIES_FILE || path.ends_with(".cedar") || path.ends_with(".cedarschema"),
        Some((TESTS_DIR, rest)) => {
            !rest.is_empty() && (rest.ends_with(".yaml") || rest.ends_with(".yml"))
        }
        Some(_) => false,
    }
}

/// Why `path` may not be in a bundle, if it may not: empty, too long, absolute, with `.`, `..`
/// or empty parts, a backslash, a control character, or a file cedargate does not read.
pub fn path_problem(path: &str) -> Option<&'static str> {
    if path.is_empty() {
        return Some("an empty path");
    }
    if path.len() > MAX_PATH_BYTES {
        return Some("the path is too long");
    }
    if path.starts_with('/') {
        return Some("an absolute path: bundle paths are relative to the policy folder");
    }
    if path.contains('\\') || path.chars().any(char::is_control) {
        return Some("a backslash or control character in the path");
    }
    if path.split('/').any(|part| part == "..") {
        return Some("a path that climbs out of the policy folder (`..`)");
    }
    if path.split('/').any(|part| part.is_empty() || part == ".") {
        return Some("an empty or `.` part in the path");
    }
    if !is_policy_file(path) {
        return Some(
            "not a file cedargate reads (*.cedar, *.cedarschema, entities.json, tests/**/*.yaml)",
        );
    }
    None
}

/// Packs `files` (relative path → content) into a bundle: the manifest first, then the files
/// sorted by path, with fixed owner, mode and time so that the same folder, revision and time
/// give the same bytes.
pub fn build(
    revision: &str,
    created: SystemTime,
    files: &BTreeMap<String, Vec<u8>>,
    limits: &Limits,
) -> Result<Vec<u8>, BundleError> {
    if files.len() > limits.max_files {
        return Err(BundleError::TooManyFiles(limits.max_files));
    }
    let mut listed = Vec::with_capacity(files.len());
    for (path, content) in files {
        if let Some(why) = path_problem(path) {
            return Err(BundleError::BadPath {
                path: path.clone(),
                why,
            });
        }
        let size = content.len() as u64;
        if size > limits.max_file_bytes {
            return Err(BundleError::TooLarge {
                what: format!("`{path}`"),
                limit: limits.max_file_bytes,
            });
        }
        listed.push(ManifestFile {
            path: path.clone(),
            size,
            sha256: sha256_hex(content),
        });
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        revision: revision.to_string(),
        created: humantime::format_rfc3339_micros(created).to_string(),
        files: listed,
    };
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Manifest(e.to_string()))?;
    let mtime = created
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let entries = std::iter::once((MANIFEST, manifest_json.as_slice()))
        .chain(files.iter().map(|(p, c)| (p.as_str(), c.as_slice())));
    for (path, content) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(mtime);
        header.set_uid(0);
        header.set_gid(0);
        header.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut header, path, content)
            .map_err(|e| BundleError::Corrupt(format!("writing `{path}`: {e}")))?;
    }
    let gz = tar
        .into_inner()
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    let archive = gz
        .finish()
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    if archive.len() as u64 > limits.max_archive_bytes {
        return Err(BundleError::TooLarge {
            what: "the bundle".into(),
            limit: limits.max_archive_bytes,
        });
    }
    Ok(archive)
}

/// Reads and checks a bundle's archive (not its signature: see
/// [`crate::bundle_signature::verify`], which must come first).
pub fn unpack(archive: &[u8], limits: &Limits) -> Result<Bundle, BundleError> {
    if archive.len() as u64 > limits.max_archive_bytes {
        return Err(BundleError::TooLarge {
            what: "the bundle".into(),
            limit: limits.max_archive_bytes,
        });
    }
    let digest = sha256_hex(archive);
    // Decompress into memory within the bound first: the tar reader then never sees more than
    // `max_unpacked_bytes`, whatever the compression ratio.
    let mut tar_bytes = Vec::new();
    flate2::read::GzDecoder::new(archive)
        .take(limits.max_unpacked_bytes.saturating_add(1))
        .read_to_end(&mut tar_bytes)
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    if tar_bytes.len() as u64 > limits.max_unpacked_bytes {
        return Err(BundleError::TooLarge {
            what: "the unpacked bundle".into(),
            limit: limits.max_unpacked_bytes,
        });
    }
    let mut reader = tar::Archive::new(tar_bytes.as_slice());
    let entries = reader
        .entries()
        .map_err(|e| BundleError::Corrupt(e.to_string()))?;
    let mut manifest: Option<Manifest> = None;
    let mut files = BTreeMap::new();
    let mut dirs = BTreeSet::new();
    for entry in entries {
        let mut entry = entry.map_err(|e| BundleError::Corrupt(e.to_string()))?;
        let raw_path = entry.path_bytes().into_owned();
        let path = String::from_utf8(raw_path).map_err(|e| BundleError::BadPath {
            path: String::from_utf8_lossy(e.as_bytes()).into_owned(),
            why: "a path that is not UTF-8",
        })?;
        let kind = entry.header().entry_type();
        if kind.is_dir() {
            // Folders are implied by file paths; an explicit one must still be a safe path.
            let dir = path.trim_end_matches('/');
            if dir != TESTS_DIR && !dir.starts_with("tests/") {
                return Err(BundleError::BadPath {
                    path,
                    why: "a folder cedargate does not read (only tests/ may have folders)",
                });
            }
            if let Some(why) = path_problem(&format!("{dir}/x.yaml")) {
                return Err(BundleError::BadPath { path, why });
            }
            dirs.insert(dir.to_string());
            continue;
        }
        if !kind.is_file() {
            return Err(BundleError::NotAFile {
                path,
                kind: kind_name(kind),
            });
        }
        let size = entry
            .header()
            .size()
            .map_err(|e| BundleError::Corrupt(e.to_string()))?;
        if manifest.is_none() {
            if path != MANIFEST {
                return Err(BundleError::Manifest(format!(
                    "must be the first entry, found `{path}` first"
                )));
            }
            if size > MAX_MANIFEST_BYTES {
                return Err(BundleError::TooLarge {
                    what: MANIFEST.into(),
                    limit: MAX_MANIFEST_BYTES,
                });
            }
            let mut text = Vec::new();
            entry
                .read_to_end(&mut text)
                .map_err(|e| BundleError::Corrupt(e.to_string()))?;
            let parsed: Manifest =
                serde_json::from_slice(&text).map_err(|e| BundleError::Manifest(e.to_string()))?;
            if parsed.format != FORMAT {
                return Err(BundleError::Manifest(format!(
                    "format `{}` is not `{FORMAT}`: a newer cedargate built it?",
                    parsed.format
                )));
            }
            manifest = Some(parsed);
            continue;
        }
        if let Some(why) = path_problem(&path) {
            return Err(BundleError::BadPath { path, why });
        }
        if files.contains_key(&path) || path == MANIFEST {
            return Err(BundleError::Duplicate(path));
        }
        if files.len() >= limits.max_files {
            return Err(BundleError::TooManyFiles(limits.max_files));
        }
        if size > limits.max_file_bytes {
            return Err(BundleError::TooLarge {
                what: format!("`{path}`"),
                limit: limits.max_file_bytes,
            });
        }
        let mut content = Vec::new();
        entry
            .read_to_end(&mut content)
            .map_err(|e| BundleError::Corrupt(e.to_string()))?;
        files.insert(path, content);
    }
    let manifest =
        manifest.ok_or_else(|| BundleError::Manifest("missing: an empty bundle".to_string()))?;
    if dirs.iter().any(|d| files.contains_key(d)) {
        return Err(BundleError::Corrupt(
            "a path is both a file and a folder".into(),
        ));
    }
    check_against_manifest(&manifest, &files)?;
    Ok(Bundle {
        manifest,
        digest,
        files,
    })
}

/// Every file listed with its size and digest, and nothing else.
fn check_against_manifest(
    manifest: &Manifest,
    files: &BTreeMap<String, Vec<u8>>,
) -> Result<(), BundleError> {
    let mut listed = BTreeSet::new();
    for file in &manifest.files {
        if !listed.insert(file.path.as_str()) {
            return Err(BundleError::Manifest(format!(
                "lists `{}` twice",
                file.path
            )));
        }
        let Some(content) = files.get(&file.path) else {
            return Err(BundleError::Missing(file.path.clone()));
        };
        if content.len() as u64 != file.size {
            return Err(BundleError::Mismatch {
                path: file.path.clone(),
                why: format!("{} bytes, the manifest says {}", content.len(), file.size),
            });
        }
        let actual = sha256_hex(content);
        if actual != file.sha256 {
            return Err(BundleError::Mismatch {
                path: file.path.clone(),
                why: format!("SHA-256 {actual}, the manifest says {}", file.sha256),
            });
        }
    }
    if let Some(extra) = files.keys().find(|p| !listed.contains(p.as_str())) {
        return Err(BundleError::Mismatch {
            path: extra.clone(),
            why: "not listed".into(),
        });
    }
    Ok(())
}

/// A tar entry type in words.
fn kind_name(kind: tar::EntryType) -> &'static str {
    match kind {
        tar::EntryType::Symlink => "symbolic link",
        tar::EntryType::Link => "hard link",
        tar::EntryType::Char => "character device",
        tar::EntryType::Block => "block device",
        tar::EntryType::Fifo => "named pipe",
        _ => "special entry",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        list.iter()
            .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
            .collect()
    }

    fn example() -> BTreeMap<String, Vec<u8>> {
        files(&[
            ("a.cedar", "permit(principal, action, resource);"),
            ("entities.json", "[]"),
            ("tests/a.yaml", "cases: []"),
        ])
    }

    /// One raw tar entry: path bytes, type, content.
    type Entry<'a> = (&'a [u8], tar::EntryType, &'a [u8]);

    /// A raw tar.gz with entries as given (path bytes, type, content): what a hostile publisher
    /// could send, bypassing `build`'s checks.
    fn raw(entries: &[Entry]) -> Vec<u8> {
        let mut tar = tar::Builder::new(Vec::new());
        for (path, kind, content) in entries {
            let mut header = tar::Header::new_old();
            // Written into the header directly: `set_path` refuses `..` and absolute paths.
            let name = &mut header.as_old_mut().name;
            name[..path.len()].copy_from_slice(path);
            header.set_size(content.len() as u64);
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
                header.set_link_name("/etc/passwd").unwrap();
            }
            header.set_cksum();
            tar.append(&header, *content).unwrap();
        }
        let tar = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    fn manifest_for(list: &[(&str, &str)]) -> Vec<u8> {
        let manifest = Manifest {
            format: FORMAT.into(),
            revision: "r1".into(),
            created: "2026-01-01T00:00:00Z".into(),
            files: list
                .iter()
                .map(|(p, c)| ManifestFile {
                    path: p.to_string(),
                    size: c.len() as u64,
                    sha256: sha256_hex(c.as_bytes()),
                })
                .collect(),
        };
        serde_json::to_vec(&manifest).unwrap()
    }

    #[test]
    fn a_built_bundle_unpacks_to_the_same_files_and_builds_reproducibly() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_780_000_000);
        let archive = build("r1", at, &example(), &DEFAULT_LIMITS).unwrap();
        assert_eq!(
            build("r1", at, &example(), &DEFAULT_LIMITS).unwrap(),
            archive
        );
        let bundle = unpack(&archive, &DEFAULT_LIMITS).unwrap();
        assert_eq!(bundle.files, example());
        assert_eq!(bundle.manifest.revision, "r1");
        assert_eq!(bundle.manifest.files.len(), 3);
        assert_eq!(bundle.digest, sha256_hex(&archive));
        assert!(
            bundle.manifest.created.starts_with("2026-05-28T"),
            "{}",
            bundle.manifest.created
        );
    }

    #[test]
    fn hostile_entries_are_refused_naming_the_entry() {
        let file = tar::EntryType::Regular;
        let ok = ("a.cedar", "permit(principal, action, resource);");
        let manifest = manifest_for(&[ok]);
        let m: Entry = (b"manifest.json", file, &manifest);
        let cases: Vec<(&str, Vec<Entry>, &str)> = vec![
            (
                "traversal",
                vec![m, (b"../a.cedar", file, b"x")],
                "climbs out",
            ),
            (
                "deep traversal",
                vec![m, (b"tests/../../x.yaml", file, b"x")],
                "climbs out",
            ),
            (
                "absolute",
                vec![m, (b"/etc/a.cedar", file, b"x")],
                "absolute path",
            ),
            (
                "symlink",
                vec![m, (b"a.cedar", tar::EntryType::Symlink, b"")],
                "symbolic link",
            ),
            (
                "hard link",
                vec![m, (b"a.cedar", tar::EntryType::Link, b"")],
                "hard link",
            ),
            (
                "device",
                vec![m, (b"a.cedar", tar::EntryType::Char, b"")],
                "character device",
            ),
            (
                "fifo",
                vec![m, (b"a.cedar", tar::EntryType::Fifo, b"")],
                "named pipe",
            ),
            (
                "unread file",
                vec![m, (b"run.sh", file, b"x")],
                "not a file cedargate reads",
            ),
            (
                "folder outside tests",
                vec![m, (b"sub/", tar::EntryType::Directory, b"")],
                "only tests/",
            ),
            (
                "duplicate",
                vec![
                    m,
                    (b"a.cedar", file, ok.1.as_bytes()),
                    (b"a.cedar", file, ok.1.as_bytes()),
                ],
                "twice",
            ),
            (
                "manifest not first",
                vec![(b"a.cedar", file, ok.1.as_bytes()), m],
                "must be the first entry",
            ),
            ("no manifest", vec![], "missing"),
            (
                "altered file",
                vec![
                    m,
                    (b"a.cedar", file, b"permit(principal, action, resource) ;"),
                ],
                "does not match the manifest",
            ),
            (
                "same size, altered",
                vec![
                    m,
                    (b"a.cedar", file, b"forbid(principal, action, resource);"),
                ],
                "SHA-256",
            ),
            ("missing file", vec![m], "missing from the bundle"),
            (
                "unlisted file",
                vec![
                    m,
                    (b"a.cedar", file, ok.1.as_bytes()),
                    (b"b.cedar", file, b"x"),
                ],
                "not listed",
            ),
            (
                "bad manifest",
                vec![(b"manifest.json", file, b"{\"format\": 1}")],
                "manifest.json",
            ),
        ];
        for (name, entries, expected) in cases {
            let err = unpack(&raw(&entries), &DEFAULT_LIMITS)
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{name}: {err}");
        }
        // The same entries with the right content are accepted: the cases fail for their reason.
        let good = raw(&[m, (b"a.cedar", file, ok.1.as_bytes())]);
        assert!(unpack(&good, &DEFAULT_LIMITS).is_ok());
    }

    #[test]
    fn sizes_are_bounded_before_and_while_unpacking() {
        let archive = build("r1", SystemTime::now(), &example(), &DEFAULT_LIMITS).unwrap();
        let tight = |f: fn(&mut Limits)| {
            let mut l = DEFAULT_LIMITS;
            f(&mut l);
            unpack(&archive, &l).unwrap_err().to_string()
        };
        assert!(
            tight(|l| l.max_archive_bytes = 10)
                .contains("the bundle is over the limit of 10 bytes")
        );
        assert!(tight(|l| l.max_unpacked_bytes = 1024).contains("the unpacked bundle is over"));
        assert!(tight(|l| l.max_file_bytes = 5).contains("over the limit of 5 bytes"));
        assert!(tight(|l| l.max_files = 2).contains("more than 2 files"));
        // A gzip bomb: 64 MiB of zeros in a ~64 KiB archive stops at the bound.
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
        let bomb = gz.finish().unwrap();
        let mut l = DEFAULT_LIMITS;
        l.max_unpacked_bytes = 1024 * 1024;
        let err = unpack(&bomb, &l).unwrap_err().to_string();
        assert!(err.contains("the unpacked bundle is over"), "{err}");
        // Building refuses what unpacking would.
        let mut l = DEFAULT_LIMITS;
        l.max_file_bytes = 5;
        assert!(build("r", SystemTime::now(), &example(), &l).is_err());
    }

    #[test]
    fn a_truncated_or_garbled_archive_is_corrupt() {
        let archive = build("r1", SystemTime::now(), &example(), &DEFAULT_LIMITS).unwrap();
        for cut in [0, 10, archive.len() / 2, archive.len() - 4] {
            let err = unpack(&archive[..cut], &DEFAULT_LIMITS).unwrap_err();
            assert!(
                matches!(err, BundleError::Corrupt(_) | BundleError::Manifest(_)),
                "cut at {cut}: {err}"
            );
        }
        let err = unpack(b"not a gzip", &DEFAULT_LIMITS).unwrap_err();
        assert!(matches!(err, BundleError::Corrupt(_)), "{err}");
    }

    #[test]
    fn only_files_cedargate_reads_have_valid_paths() {
        for ok in [
            "a.cedar",
            "s.cedarschema",
            "entities.json",
            "tests/a.yaml",
            "tests/x/b.yml",
        ] {
            assert_eq!(path_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "/a.cedar",
            "../a.cedar",
            "tests/../a.cedar",
            "./a.cedar",
            "tests//a.yaml",
            "a\\b.cedar",
            "README.md",
            "sub/a.cedar",
            "tests/",
            "a\n.cedar",
        ] {
            assert!(path_problem(bad).is_some(), "{bad:?}");
        }
    }
}
