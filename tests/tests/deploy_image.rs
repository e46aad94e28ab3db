//! The container image, checked without a container engine: the `Dockerfile` builds the
//! binary with the same command the tests build with and copies it into
//! `debian:bookworm-slim`, so the binary built here must need no shared library beyond the
//! ones that image ships (glibc and libgcc_s) and no glibc symbol newer than bookworm's 2.36.
//! Where a container engine can run, `docker build .` is the real check (docs/install.md).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use warden_tests::procs::{require_program, warden_binary, workspace_root};

/// The runtime image the Dockerfile's last stage starts from.
const RUNTIME_IMAGE: &str = "FROM debian:bookworm-slim AS runtime";

/// Shared libraries `debian:bookworm-slim` provides (packages libc6 and libgcc-s1).
const RUNTIME_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "librt.so.1",
    "libutil.so.1",
    "libgcc_s.so.1",
    "ld-linux-x86-64.so.2",
];

/// glibc of Debian 12 (bookworm).
const RUNTIME_GLIBC: (u32, u32) = (2, 36);

/// The build step of the Dockerfile, also how `tests/run.sh` builds (in debug).
const BUILD_STEP: &str = "cargo build --release --locked -p warden-agent --bin warden";

/// The release binary when one was built (newer than the debug one), else the debug
/// binary the other tests run: both link the same libraries.
fn binary() -> Result<PathBuf> {
    let debug = warden_binary()?;
    let release = workspace_root().join("target/release/warden");
    let modified = |p: &PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    Ok(match (modified(&release), modified(&debug)) {
        (Some(r), Some(d)) if r >= d => release,
        _ => debug,
    })
}

fn readelf(args: &[&str], binary: &PathBuf) -> Result<String> {
    let readelf = require_program("readelf")?;
    let out = Command::new(readelf).args(args).arg(binary).output().context("running readelf")?;
    ensure!(out.status.success(), "readelf {args:?} {}: {}", binary.display(), String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `Shared library: [libc.so.6]` lines of `readelf -d`.
fn needed(dynamic: &str) -> BTreeSet<String> {
    dynamic
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| {
            let start = l.find('[')? + 1;
            let end = l[start..].find(']')? + start;
            Some(l[start..end].to_string())
        })
        .collect()
}

/// Every `GLIBC_x.y[.z]` version the binary asks for (`readelf -V`).
fn glibc_versions(versions: &str) -> BTreeSet<(u32, u32)> {
    versions
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .collect()
}

#[test]
fn binary_needs_only_the_runtime_image_libraries() -> Result<()> {
    let binary = binary()?;
    let needed = needed(&readelf(&["-d", "--wide"], &binary)?);
    ensure!(
        needed.contains("libc.so.6"),
        "{}: readelf found no NEEDED entries (is it a dynamic binary?): {needed:?}",
        binary.display()
    );
    let extra: Vec<_> = needed.iter().filter(|lib| !RUNTIME_LIBRARIES.contains(&lib.as_str())).collect();
    ensure!(
        extra.is_empty(),
        "{} needs {extra:?}, which debian:bookworm-slim does not ship: install the package in \
         the Dockerfile's runtime stage and add the library here",
        binary.display()
    );
    let glibc = glibc_versions(&readelf(&["-V", "--wide"], &binary)?);
    let newest = glibc.iter().max().copied();
    ensure!(
        newest.is_some_and(|v| v <= RUNTIME_GLIBC),
        "{} asks for glibc {newest:?}; bookworm has {RUNTIME_GLIBC:?}",
        binary.display()
    );
    let interp = readelf(&["-l", "--wide"], &binary)?;
    ensure!(interp.contains("/lib64/ld-linux-x86-64.so.2"), "unexpected program interpreter:\n{interp}");
    Ok(())
}

#[test]
fn library_lists_are_parsed() {
    let dynamic = " 0x0000000000000001 (NEEDED)             Shared library: [libgcc_s.so.1]\n \
                   0x0000000000000001 (NEEDED)             Shared library: [libc.so.6]\n \
                   0x000000000000000c (INIT)               0x4000\n";
    assert_eq!(needed(dynamic), BTreeSet::from(["libc.so.6".to_string(), "libgcc_s.so.1".to_string()]));
    let versions = "  0x0010:   Name: GLIBC_2.34  Flags: none  Version: 5\n  Name: GLIBC_2.2.5 \
                    Name: GLIBC_PRIVATE";
    assert_eq!(glibc_versions(versions), BTreeSet::from([(2, 2), (2, 34)]));
}

#[test]
fn dockerfile_builds_runs_and_ignores_what_it_should() -> Result<()> {
    let root = workspace_root();
    let dockerfile = std::fs::read_to_string(root.join("Dockerfile")).context("Dockerfile")?;
    for want in [
        BUILD_STEP,
        RUNTIME_IMAGE,
        "strip --strip-all",
        "USER 65532:65532",
        r#"ENTRYPOINT ["warden", "run", "-c", "/etc/warden/warden.yaml"]"#,
    ] {
        ensure!(dockerfile.contains(want), "the Dockerfile lacks `{want}`");
    }
    // Exactly two stages, and no model file copied in.
    let stages = dockerfile.lines().filter(|l| l.starts_with("FROM ")).count();
    ensure!(stages == 2, "{stages} stages in the Dockerfile");
    if let Some(line) = dockerfile.lines().find(|l| l.starts_with("COPY") && l.contains(".gguf")) {
        bail!("the Dockerfile copies a model: {line}");
    }
    let ignore = std::fs::read_to_string(root.join(".dockerignore")).context(".dockerignore")?;
    let entries: BTreeSet<&str> =
        ignore.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    for want in ["target/", ".git/", "*.gguf"] {
        ensure!(entries.contains(want), ".dockerignore lacks {want}");
    }
    // What the build reads stays in the context.
    for kept in ["Cargo.lock", "agent/", "docs/", "tests/"] {
        ensure!(!entries.contains(kept), ".dockerignore drops {kept}, which the build needs");
    }
    Ok(())
}
