//! The Explorer as a person uses it: a real headless Chromium, driven over WebDriver by
//! Debian's chromedriver, opens the split-brain counterexample link that
//! `quiesce explore --counterexample` prints, and the rendered page must tell the story:
//! the violated property, the steps, and the SVG lane view. A screenshot is saved to
//! `target/artifacts/explorer-split-brain.png`.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wd(method: &str, url: &str, body: Option<Value>) -> Value {
    let req = ureq::request(method, url);
    let resp = match body {
        Some(b) => req.send_json(b),
        None => req.call(),
    };
    match resp {
        Ok(r) => r.into_json().expect("webdriver answers JSON"),
        Err(ureq::Error::Status(code, r)) => panic!(
            "webdriver {method} {url}: {code}: {}",
            r.into_string().unwrap_or_default()
        ),
        Err(e) => panic!("webdriver {method} {url}: {e}"),
    }
}

#[test]
fn split_brain_counterexample_reads_in_a_real_browser() {
    let spec =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../model/specs/02-freeze-inside.toml");
    // The Explorer, on the split-brain counterexample.
    let mut explorer = Command::new(env!("CARGO_BIN_EXE_quiesce"))
        .args([
            "explore",
            spec.to_str().unwrap(),
            "--kind",
            "bio",
            "--addr",
            "127.0.0.1:0",
            "--counterexample",
            "no_bypass",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("quiesce explore starts");
    let err = explorer.stderr.take().unwrap();
    let _explorer = Killed(explorer);
    let mut line = String::new();
    BufReader::new(err).read_line(&mut line).unwrap();
    let link = line.trim().rsplit(" at ").next().unwrap().to_string();
    assert!(link.contains("/#/steps/0/"), "{line}");

    // A free port for ChromeDriver; it says when it listens.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut driver = Command::new("chromedriver")
        .arg(format!("--port={free}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (scripts/setup.sh installs Debian's chromium-driver)");
    let out = driver.stdout.take().unwrap();
    let _driver = Killed(driver);
    let mut reader = BufReader::new(out);
    let mut port = None;
    for _ in 0..20 {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap() == 0 {
            break;
        }
        if l.contains("started successfully") {
            port = Some(free);
            break;
        }
    }
    let base = format!(
        "http://127.0.0.1:{}",
        port.expect("chromedriver reports its port")
    );
    std::thread::spawn(move || for _ in reader.lines() {});

    let profile = std::env::temp_dir().join(format!("quiesce-chromium-{}", std::process::id()));
    let caps = json!({"capabilities": {"alwaysMatch": {
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1600,1300", format!("--user-data-dir={}", profile.display())]
        }
    }}});
    let session = wd("POST", &format!("{base}/session"), Some(caps));
    let id = session["value"]["sessionId"]
        .as_str()
        .expect("a session")
        .to_string();
    let s = format!("{base}/session/{id}");
    wd(
        "POST",
        &format!("{s}/timeouts"),
        Some(json!({"implicit": 20000, "pageLoad": 20000})),
    );
    wd("POST", &format!("{s}/url"), Some(json!({"url": link})));

    // Waits (implicitly) until the page has rendered each of these.
    let find = |xpath: &str| {
        wd(
            "POST",
            &format!("{s}/element"),
            Some(json!({"using": "xpath", "value": xpath})),
        )
    };
    let text_of = |el: &Value| {
        let eid = el["value"]
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .expect("an element")
            .to_string();
        wd("GET", &format!("{s}/element/{eid}/text"), None)["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let svg = find("//*[local-name()='svg' and contains(@class,'quiesce-lanes')]");
    assert!(
        svg["value"].is_object(),
        "the SVG lane view is present: {svg}"
    );
    let found = text_of(&find(
        "//li[contains(., 'Counterexample found') and contains(., 'no_bypass')]",
    ));
    assert!(found.contains("no_bypass"), "{found}");
    let state = text_of(&find("//section[contains(@class,'main-flex-right')]"));
    assert!(state.contains("VIOLATED here: no_bypass"), "{state}");
    assert!(state.contains("bio1.1: inside O (skipped I)"), "{state}");
    let steps = text_of(&find("//ol[contains(@class,'path-list')]"));
    for want in [
        "submitter 1: O->submit_bio(bio1.1)",
        "controller 1: blk_freeze_queue_start(O)",
        "controller 1: cmpxchg_interposer(O, I1)",
        "controller 1: attach() returns 0",
    ] {
        assert!(steps.contains(want), "missing step `{want}` in:\n{steps}");
    }
    let lanes = text_of(&svg);
    assert!(
        lanes.contains("submitter 1")
            && lanes.contains("controller 1")
            && lanes.contains("O (original)")
            && lanes.contains("I1 (interposer)"),
        "{lanes}"
    );

    // What the CLI says of the same counterexample.
    let report = Command::new(env!("CARGO_BIN_EXE_quiesce"))
        .args(["check", "--json", spec.to_str().unwrap(), "--kind", "bio"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&report.stdout).expect("json report");
    let prop = report["specs"][0]["kinds"][0]["properties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "no_bypass")
        .unwrap()
        .clone();
    let cli_steps = prop["trace"].as_array().unwrap().len();
    let cli_path = prop["explorer_path"].as_str().unwrap().to_string();
    assert!(link.ends_with(&format!("#/steps/{cli_path}")), "{link}");
    let js = |script: &str| {
        wd(
            "POST",
            &format!("{s}/execute/sync"),
            Some(json!({"script": script, "args": []})),
        )["value"]
            .clone()
    };
    // The sidebar's link for the property opens the CLI's shortest path.
    let href = js("return [...document.querySelectorAll('nav a')]\
                   .filter(a => a.textContent.includes('no_bypass'))\
                   .map(a => a.getAttribute('href'))[0] || null;");
    assert_eq!(href, json!(format!("#/steps/{cli_path}")));
    // A sanity property's link is a shortest example too: on 02 bio a redirected bio
    // takes 12 steps (the attach, then the bio's way through the hook to I);
    // Stateright's own search had linked one of 43.
    let example = js("return [...document.querySelectorAll('nav a')]\
                      .filter(a => a.textContent.includes('bio_redirected'))\
                      .map(a => a.getAttribute('href'))[0] || null;");
    let steps = example.as_str().expect("a link").split('/').count() - 3;
    assert_eq!(steps, 12, "{example}");
    // Steps are numbered as the CLI numbers them: the last is step cli_steps.
    let numbering = js("const ol = document.querySelector('ol.path-list');\
                        return [ol.start, ol.children.length];");
    assert_eq!(
        numbering[0].as_i64().unwrap() + numbering[1].as_i64().unwrap() - 1,
        cli_steps as i64,
        "{numbering}"
    );
    // The page names the spec and kind and says why its count differs from the CLI's.
    let header = text_of(&find("//header"));
    assert!(header.contains("freeze-inside [bio]"), "{header}");
    let status = text_of(&find("//nav"));
    assert!(
        status.contains("without symmetry reduction") && status.contains("freeze-inside [bio]"),
        "{status}"
    );
    // "Complete State" is quiesce's description, not Rust Debug output.
    js("document.querySelector('section.main-flex-right input[type=checkbox]').click(); return 0;");
    let complete = text_of(&find("//section[contains(@class,'main-flex-right')]"));
    assert!(
        complete.contains("O->bd_interposer = I1#1") && !complete.contains("State {"),
        "{complete}"
    );
    // The icons need a colour emoji font (scripts/setup.sh installs one).
    let fonts = Command::new("fc-list")
        .arg(":charset=1f50e")
        .output()
        .expect("fontconfig's fc-list");
    assert!(
        !String::from_utf8_lossy(&fonts.stdout).trim().is_empty(),
        "no font has the Explorer's emoji (U+1F50E)"
    );

    let shot = wd("GET", &format!("{s}/screenshot"), None);
    let png = base64::Engine::decode(
        &base64::engine::general_purpose::STANDARD,
        shot["value"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("explorer-split-brain.png"), png).unwrap();
    wd("DELETE", &s, None);
    let _ = std::fs::remove_dir_all(profile);
}
