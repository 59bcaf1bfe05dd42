//! The request struct is written twice, in the module (kmod/module/cbt.rs) and
//! here (src/dev.rs), since the kernel crate and a user-space crate share no
//! code: their fields, in order and with their types, must be the same, and both
//! must match docs/cbt.md's C struct.

fn fields(src: &str) -> Vec<(String, String)> {
    let start = src.find("struct Req {").expect("struct Req");
    let body = &src[start..src[start..].find('}').expect("end of struct") + start];
    body.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//") && l.contains(':'))
        .map(|l| {
            let (n, t) = l.trim_end_matches(',').split_once(':').expect("field");
            (n.trim().to_string(), t.trim().to_string())
        })
        .collect()
}

#[test]
fn module_and_tool_agree_on_the_request() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let kernel = fields(&std::fs::read_to_string(root.join("kmod/module/cbt.rs")).unwrap());
    let user = fields(&std::fs::read_to_string(root.join("cbt/src/dev.rs")).unwrap());
    assert_eq!(kernel.len(), 12, "{kernel:?}");
    assert_eq!(kernel, user);
    // The document's C struct names the same fields in the same order.
    let doc = std::fs::read_to_string(root.join("docs/cbt.md")).unwrap();
    let c = &doc[doc.find("struct quiesce_cbt {").unwrap()..doc.find("};").unwrap()];
    let mut names = Vec::new();
    for l in c.lines().skip(1) {
        let decl = l.split("/*").next().unwrap().trim().trim_end_matches(';');
        if let Some((_, rest)) = decl.split_once(' ') {
            names.extend(rest.split(',').map(|n| n.trim().to_string()));
        }
    }
    let want: Vec<String> = kernel.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, want);
}
