//! The tool's commands on the host: a full copy of a file, and the errors a
//! user meets (the kernel side is tested in the boot test).

use std::process::Command;

fn tool(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_quiesce-cbt"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into(),
        String::from_utf8_lossy(&o.stderr).into(),
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    // Under target/, on the build's own filesystem (tmpfs has no O_DIRECT).
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn full_copy_of_a_file_is_exact() {
    let d = scratch("copy");
    let src = d.join("src.img");
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 8192)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let dst = d.join("dst.img");
    let (ok, out, err) = tool(&[
        "copy",
        src.to_str().unwrap(),
        dst.to_str().unwrap(),
        "--json",
    ]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["blocks"], data.len() as u64 / 4096);
    assert_eq!(std::fs::read(&dst).unwrap(), data);
}

#[test]
fn errors_name_the_place_and_the_cause() {
    let d = scratch("errors");
    let (ok, _, err) = tool(&["read", "/dev/null"]);
    assert!(!ok);
    assert!(err.contains("/dev/null: not a block device"), "{err}");
    let bad = d.join("bad.map");
    std::fs::write(&bad, b"QCBTMAP1 but short").unwrap();
    let (ok, _, err) = tool(&["show", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("bad.map") && err.contains("shorter than the 56-byte header"),
        "{err}"
    );
    let (ok, _, err) = tool(&["copy", "/nonexistent/dev", d.join("x").to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("/nonexistent/dev") && err.contains("No such file"),
        "{err}"
    );
    // A map applies only to a block device it was read from.
    let m = quiesce_cbt::Map {
        major: 1,
        minor: 3,
        session: 1,
        generation: 1,
        block_size: 4096,
        nr_blocks: 1,
        words: vec![1],
    };
    let mf = d.join("one.map");
    std::fs::write(&mf, m.encode()).unwrap();
    let src = d.join("src.img");
    std::fs::write(&src, [0u8; 4096]).unwrap();
    let (ok, _, err) = tool(&[
        "copy",
        src.to_str().unwrap(),
        d.join("y").to_str().unwrap(),
        "--map",
        mf.to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(err.contains("not a block device"), "{err}");
}
