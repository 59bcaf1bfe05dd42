//! The C side of the hot path: the part of `submit_bio_noacct()` after
//! `bio_queue_enter()` that decides where a bio goes, rendered from the spec's
//! hot path into `block/blk-interposer-route.h`, carried by a patch of its own in
//! `kmod/patches/`. The block layer around it (`__submit_bio()` and
//! `blk_mq_submit_bio()`) takes the queue reference before it, and drops it after
//! it, or runs the device's own path when it returns false.
//!
//! A hot path whose steps have no C meaning in that place is refused, with the step
//! and the reason.

use crate::{render_template, spec_path_display, GenError};
use quiesce_model::check::SpecReport;
use quiesce_model::spec::{HotOp, MarkerKind, Spec};

/// The file the patch adds, relative to the kernel tree.
pub const ROUTE_FILE: &str = "block/blk-interposer-route.h";
/// The patch's name in `kmod/patches/` (second in the series: the hook includes it).
pub const PATCH_NAME: &str = "0003-block-add-the-interposer-route-rendered-from-a-spec.patch";
/// The project's author line, as in the rest of the series.
const AUTHOR: &str =
    "Seed 97e53308 maintainers <maintainers@users.noreply.r-seed-97e53308.example>";

fn refuse(i: usize, op: &HotOp, why: &str) -> GenError {
    GenError::Refused(format!(
        "hot path step {} `{}` cannot be rendered as the kernel's C hook: {why}",
        i + 1,
        op.name()
    ))
}

/// The `blk_interposer_bio` trace event of a step (`ev`), in kernel style: the
/// route reports each step it takes, for `quiesce replay`. The device is the
/// one the bio was sent to (a partition's own, not its disk's, which
/// `bio_dev()` would give).
fn trace(out: &mut Vec<String>, ev: &str, val: &str, arg: &str) {
    out.push("\ttrace_blk_interposer_bio(bio->bi_bdev->bd_dev, bio,".into());
    // Continuation lines: four tabs (32 columns) and a space; kernel style
    // keeps lines within 80 columns.
    let fits = |l: &str| 33 + l.len() <= 80;
    let ev = format!("BLK_INTERPOSER_{ev},");
    let lines = [
        vec![format!("{ev} {val}, {arg});")],
        vec![format!("{ev} {val},"), format!("{arg});")],
        vec![ev.clone(), format!("{val}, {arg});")],
    ];
    let pick = lines
        .iter()
        .find(|ls| ls.iter().all(|l| fits(l)))
        .unwrap_or(&lines[2]);
    out.extend(pick.iter().map(|l| format!("\t\t\t\t {l}")));
}

/// The C statements of the route, one string per line (tab-indented), in the
/// spec's order, each step followed by its trace event.
pub fn route_lines(spec: &Spec) -> Result<Vec<String>, GenError> {
    let hot = &spec.protocol.hot_path;
    let bio_flag = spec.protocol.marker == MarkerKind::BioFlag;
    match hot.first() {
        Some(HotOp::QueueEnter) => {}
        Some(op) => {
            return Err(refuse(
                0,
                op,
                "the hook runs inside the queue reference that the block layer takes first; \
                 the hot path must start with `bio_queue_enter`",
            ))
        }
        None => return Err(GenError::Refused("the hot path is empty".into())),
    }
    let drivers: Vec<usize> = (0..hot.len())
        .filter(|&i| hot[i] == HotOp::DriverSubmit)
        .collect();
    let &[driver] = &drivers[..] else {
        return Err(GenError::Refused(format!(
            "the hot path has {} `driver_submit` steps; the C hook falls back to the one \
             device path of its caller",
            drivers.len()
        )));
    };
    if hot[driver + 1..] != [HotOp::QueueExit] {
        return Err(refuse(
            driver,
            &hot[driver],
            "the caller submits to the device and then drops the queue reference: \
             `driver_submit` must be followed by `blk_queue_exit` alone",
        ));
    }
    let mut out = Vec::new();
    let mut i = 1;
    while i < driver {
        let op = &hot[i];
        let to_driver = |t: u8, what: &str| {
            if t as usize == driver {
                Ok(())
            } else {
                Err(refuse(
                    i,
                    op,
                    &format!(
                        "{what} jumps to step {}; in C the only way out of the hook is the \
                         device's own path (`driver_submit`, step {})",
                        t as usize + 1,
                        driver + 1
                    ),
                ))
            }
        };
        let marker = || {
            if bio_flag {
                Ok(())
            } else {
                Err(refuse(
                    i,
                    op,
                    "only the `bio_flag` marker (BIO_INTERPOSED) has a C meaning here",
                ))
            }
        };
        match *op {
            HotOp::TestMarker { marked } => {
                marker()?;
                to_driver(marked, "a marked bio")?;
                trace(
                    &mut out,
                    "TEST_MARKER",
                    "bio_flagged(bio, BIO_INTERPOSED)",
                    "NULL",
                );
                out.push("\tif (bio_flagged(bio, BIO_INTERPOSED))".into());
                out.push("\t\treturn false;".into());
            }
            HotOp::ReadInterposer { null } => {
                to_driver(null, "a NULL pointer")?;
                out.push("\tip = READ_ONCE(bio->bi_bdev->bd_interposer);".into());
                trace(&mut out, "READ", "0", "ip");
                out.push("\tif (!ip)".into());
                out.push("\t\treturn false;".into());
            }
            HotOp::ClearMarker => {
                return Err(refuse(
                    i,
                    op,
                    "only the `bio_flag` marker (BIO_INTERPOSED) has a C meaning here",
                ))
            }
            HotOp::SetMarker => {
                marker()?;
                out.push("\tbio_set_flag(bio, BIO_INTERPOSED);".into());
                trace(&mut out, "SET_MARKER", "0", "NULL");
            }
            HotOp::Redirect => {
                if hot[i + 1..driver] != [HotOp::QueueExit, HotOp::Return] {
                    return Err(refuse(
                        i,
                        op,
                        "after the hook hands a bio to the interposer, its caller drops the \
                         queue reference and returns: `redirect` must be followed by \
                         `blk_queue_exit`, `return` and then the device path",
                    ));
                }
                trace(&mut out, "REDIRECT", "0", "ip");
                out.push("\tip->submit_bio(ip, bio);".into());
                out.push("\treturn true;".into());
                return Ok(out);
            }
            HotOp::QueueEnter | HotOp::BlkQueueEnter | HotOp::QueueExit => {
                return Err(refuse(
                    i,
                    op,
                    "the block layer takes and drops the queue reference around the hook",
                ))
            }
            HotOp::TestBioList { .. } => {
                return Err(refuse(
                    i,
                    op,
                    "the patch's hook tells I's clones by BIO_INTERPOSED, not by current->bio_list",
                ))
            }
            HotOp::FilterGet | HotOp::FilterTryGet { .. } => {
                return Err(refuse(
                    i,
                    op,
                    "the patch's filter is drained by filter_block, not refcounted per bio",
                ))
            }
            HotOp::FailBusy => {
                return Err(refuse(
                    i,
                    op,
                    "a passthrough request's step: the hook sees bios only",
                ))
            }
            HotOp::Return | HotOp::DriverSubmit | HotOp::Restart => {
                return Err(refuse(i, op, "the hook has no such exit before a redirect"))
            }
            HotOp::RcuLock | HotOp::RcuUnlock => {
                return Err(refuse(
                    i,
                    op,
                    "the patch's hook reads the pointer under the queue reference, not under RCU",
                ))
            }
        }
        i += 1;
    }
    out.push("\treturn false;".into());
    Ok(out)
}

/// The header `block/blk-interposer-route.h`, rendered from the spec.
pub fn render_header(spec: &Spec, report: &SpecReport) -> Result<String, GenError> {
    let lines = route_lines(spec)?;
    let mut ctx = tera::Context::new();
    ctx.insert("spec_file", &spec_path_display(&spec.path));
    ctx.insert("spec_name", &spec.name);
    ctx.insert("sha256", &spec.sha256);
    ctx.insert("checker", report.checker);
    ctx.insert(
        "steps",
        &spec
            .protocol
            .hot_path
            .iter()
            .map(|o| o.name())
            .collect::<Vec<_>>(),
    );
    let reads = spec
        .protocol
        .hot_path
        .iter()
        .any(|o| matches!(o, HotOp::ReadInterposer { .. }));
    ctx.insert("uses_ip", &reads);
    ctx.insert("body", &lines.join("\n"));
    render_template("blk-interposer-route.h.tera", &ctx)
}

/// The whole patch that adds the header, as `git format-patch` writes a new file.
pub fn render_patch(spec: &Spec, report: &SpecReport) -> Result<String, GenError> {
    let header = render_header(spec, report)?;
    let n = header.lines().count();
    let mut p = String::new();
    p.push_str("From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n");
    p.push_str(&format!("From: {AUTHOR}\n"));
    p.push_str("Date: Tue, 1 Dec 2026 21:00:00 +0000\n");
    p.push_str("Subject: [PATCH 3/10] block: add the interposer route rendered from a spec\n\n");
    p.push_str(&format!(
        "The part of submit_bio_noacct() that decides whether a bio goes to the\n\
         device's interposer is the hot path of the spec that the model checker\n\
         proved ({}, sha256 {}),\n\
         rendered into C by `quiesce gen`. Nothing in it is written by hand: a\n\
         change to the hot path is a change to the spec.\n\n\
         Signed-off-by: {AUTHOR}\n---\n",
        spec_path_display(&spec.path),
        &spec.sha256[..16]
    ));
    p.push_str(&format!(
        " {ROUTE_FILE} | {n} {}\n 1 file changed, {n} insertions(+)\n create mode 100644 {ROUTE_FILE}\n\n",
        "+".repeat(n.min(47))
    ));
    p.push_str(&format!(
        "diff --git a/{ROUTE_FILE} b/{ROUTE_FILE}\nnew file mode 100644\n--- /dev/null\n+++ b/{ROUTE_FILE}\n@@ -0,0 +1,{n} @@\n"
    ));
    for l in header.lines() {
        p.push('+');
        p.push_str(l);
        p.push('\n');
    }
    p.push_str("-- \n2.47.3\n\n");
    Ok(p)
}
