//! A short run of the soak example (client/examples/soak): mixed traffic
//! through the real binaries while each kind of fault happens at least
//! once; no request may fail outside a fault and no answer may be wrong.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_burrow");

/// The example as `cargo test` builds it: target/<profile>/examples/, two
/// levels above this test's own executable in target/<profile>/deps/.
fn example() -> PathBuf {
    let me = std::env::current_exe().expect("the test's own path");
    let profile = me
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from target/<profile>/deps");
    profile.join("examples").join("soak")
}

#[test]
fn a_short_soak_with_every_fault_loses_no_request_and_no_byte() {
    let soak = example();
    let bin = Path::new(BIN).parent().expect("the binaries' folder");
    for needed in [soak.clone(), bin.join("burrow-server")] {
        assert!(
            needed.exists(),
            "{} is missing: build it first (cargo build -p burrow --example soak --bins), \
             or run cargo test --workspace",
            needed.display()
        );
    }
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("soak-output.txt");
    let file = std::fs::File::create(&out).expect("the output file");
    let err = file.try_clone().expect("the output file, again");
    let mut child = Command::new(&soak)
        .args(["--secs", "20", "--workers", "6"])
        .args(["--faults", "client,server,local,freeze"])
        .arg("--bin")
        .arg(bin)
        // Its logs and configuration files stay under target/.
        .env("TMPDIR", env!("CARGO_TARGET_TMPDIR"))
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .spawn()
        .expect("start the soak");
    // Its own phases end it in about half a minute; this is the backstop.
    let end = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the soak") {
            break status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the soak ran past two minutes");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let printed = std::fs::read_to_string(&out).unwrap_or_default();
    println!("{printed}");
    // Each fault is printed as it happens: `t+6.8 s (04:20:14.503 UTC)  kill -9 client, ...`.
    let injected = |fault: &str| printed.contains(&format!("UTC)  {fault},"));
    for fault in [
        "kill -9 client",
        "SIGTERM server",
        "kill -9 local service",
        "freeze 1-2.5 s",
        "freeze 3.5-5 s",
    ] {
        assert!(injected(fault), "no {fault:?} in the run:\n{printed}");
    }
    assert!(status.success(), "the soak failed ({status}):\n{printed}");
}
