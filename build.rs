//! Build facts for `cedargate --version`: the git commit the binary is built from, as
//! `CEDARGATE_COMMIT` (taken from the environment when set, as in a container build without
//! `.git`; else from `git`; else `unknown`). Reruns only when the checked-out commit changes.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    println!("cargo:rerun-if-env-changed=CEDARGATE_COMMIT");
    let from_env = std::env::var("CEDARGATE_COMMIT")
        .ok()
        .filter(|c| !c.is_empty());
    let commit = from_env
        .or_else(|| git(&["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_string());
    // HEAD names the branch; the branch's ref (or packed-refs) names the commit.
    let mut watched = vec!["HEAD".to_string(), "packed-refs".to_string()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for path in watched {
        if let Some(file) = git(&["rev-parse", "--git-path", &path]) {
            println!("cargo:rerun-if-changed={file}");
        }
    }
    println!("cargo:rustc-env=CEDARGATE_COMMIT={commit}");
}
