//! `quiesce-cbt`: read quiesce's changed-block map and apply it to a backup.
//!
//!     quiesce-cbt read /dev/sdb [--reset] [-o MAP] [--json]
//!     quiesce-cbt show MAP [--json]
//!     quiesce-cbt copy /dev/sdb IMAGE [--map MAP] [--json]
//!
//! An incremental backup: `read --reset` once (the next generation starts), copy
//! the whole device, then, each time, `read --reset -o MAP` and
//! `copy DEV IMAGE --map MAP`. Formats: docs/cbt.md.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use quiesce_cbt::{dev, Map};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "quiesce-cbt",
    about = "Read quiesce's changed-block map and apply it to a backup copy"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Read an attached original's map from the module.
    Read {
        /// The original (the device given to `attach`).
        dev: PathBuf,
        /// Take the bits: the next read starts from a new generation.
        #[arg(long)]
        reset: bool,
        /// Write the map file here (format: docs/cbt.md).
        #[arg(short, long)]
        out: Option<PathBuf>,
        /// The control device.
        #[arg(long, default_value = "/dev/quiesce")]
        ctl: PathBuf,
        /// One JSON object instead of a line of text.
        #[arg(long)]
        json: bool,
    },
    /// Print a map file's header and changed ranges.
    Show {
        /// A map file written by `read -o`.
        map: PathBuf,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Copy a device onto an image: every block, or only those a map marks.
    Copy {
        /// The device to copy from.
        src: PathBuf,
        /// The image to copy onto (created for a full copy).
        dst: PathBuf,
        /// Copy only the blocks this map file marks, onto an existing full copy.
        #[arg(long)]
        map: Option<PathBuf>,
        /// One JSON object instead of a line of text.
        #[arg(long)]
        json: bool,
    },
}

fn load(path: &PathBuf) -> Result<Map> {
    let b = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    Map::decode(&b).with_context(|| format!("{}", path.display()))
}

fn run(cli: Cli) -> Result<()> {
    match cli.cmd {
        Cmd::Read {
            dev: d,
            reset,
            out,
            ctl,
            json,
        } => {
            let m = dev::read_map(&ctl, &d, reset)?;
            if let Some(o) = &out {
                let tmp = o.with_extension("tmp");
                std::fs::write(&tmp, m.encode()).with_context(|| format!("{}", tmp.display()))?;
                std::fs::rename(&tmp, o).with_context(|| format!("{}", o.display()))?;
            }
            if json {
                let v = serde_json::json!({
                    "device": d, "major": m.major, "minor": m.minor, "session": m.session,
                    "generation": m.generation, "block_size": m.block_size, "nr_blocks": m.nr_blocks,
                    "changed": m.changed(), "reset": reset,
                });
                println!("{v}");
            } else {
                println!(
                    "{}: session {} generation {}: {} of {} blocks changed{}",
                    d.display(),
                    m.session,
                    m.generation,
                    m.changed(),
                    m.nr_blocks,
                    if reset {
                        format!(" (taken; generation {} begins)", m.generation + 1)
                    } else {
                        String::new()
                    }
                );
            }
        }
        Cmd::Show { map, json } => {
            let m = load(&map)?;
            let ranges = m.ranges();
            if json {
                let mut v = serde_json::to_value(&m)?;
                v["changed"] = m.changed().into();
                v["ranges"] = ranges
                    .iter()
                    .map(|&(a, b)| serde_json::json!([a, b]))
                    .collect();
                println!("{v}");
            } else {
                println!(
                    "device {}:{} session {} generation {}: {} of {} blocks of {} bytes changed",
                    m.major,
                    m.minor,
                    m.session,
                    m.generation,
                    m.changed(),
                    m.nr_blocks,
                    m.block_size
                );
                let text: Vec<String> = ranges
                    .iter()
                    .map(|&(a, b)| {
                        if a == b {
                            a.to_string()
                        } else {
                            format!("{a}-{b}")
                        }
                    })
                    .collect();
                println!("changed: {}", text.join(","));
            }
        }
        Cmd::Copy {
            src,
            dst,
            map,
            json,
        } => {
            let m = map.as_ref().map(load).transpose()?;
            let c = dev::copy(&src, &dst, m.as_ref())?;
            if json {
                println!("{}", serde_json::to_string(&c)?);
            } else {
                println!(
                    "{} -> {}: copied {} blocks ({} bytes)",
                    src.display(),
                    dst.display(),
                    c.blocks,
                    c.bytes
                );
            }
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("quiesce-cbt: {e:#}");
        std::process::exit(1);
    }
}
