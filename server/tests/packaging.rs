//! The deployment files in `server/deploy/`: the systemd unit passes
//! `systemd-analyze verify` without a warning, and the Dockerfile copies
//! paths that exist and runs the binary the build makes.

use std::{path::Path, process::Command};

const BIN: &str = env!("CARGO_BIN_EXE_burrow-server");

fn deploy(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// What `systemd-analyze verify` says of `unit` (its status and stderr),
/// with the installed binary's path replaced by this build's.
fn verify(unit: &str, name: &str) -> (bool, String) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("unit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join(name);
    std::fs::write(&path, unit.replace("/usr/local/bin/burrow-server", BIN)).expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .expect("systemd-analyze runs (Debian's systemd package)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_systemd_unit_verifies_without_a_warning() {
    let unit = deploy("burrow-server.service");
    let (ok, said) = verify(&unit, "burrow-server.service");
    assert!(ok && said.trim().is_empty(), "{said}");
    for key in [
        "LimitNOFILE=",
        "NoNewPrivileges=yes",
        "DynamicUser=yes",
        "ProtectSystem=strict",
    ] {
        assert!(unit.contains(key), "the unit sets {key}");
    }
    // The check would see a mistake.
    let (_, said) = verify(
        &unit.replace("ProtectHome=", "ProtectHom="),
        "broken.service",
    );
    assert!(said.contains("ProtectHom"), "{said}");
}

#[test]
fn the_dockerfile_copies_what_exists_and_runs_the_server_as_its_own_user() {
    let file = deploy("Dockerfile");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for line in file
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for source in &parts[1..parts.len() - 1] {
            assert!(
                root.join(source).exists(),
                "{line}: {source} is not in the repository"
            );
        }
    }
    assert!(file.contains("target/release/burrow-server"));
    assert!(file.contains("USER burrow"));
    assert!(file.contains(
        "ENTRYPOINT [\"/usr/local/bin/burrow-server\", \"--config\", \"/etc/burrow/server.toml\"]"
    ));
    assert!(deploy("Dockerfile.dockerignore")
        .lines()
        .any(|l| l == "target"));
}
