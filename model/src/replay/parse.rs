//! The kernel's `blk_interposer` trace events, read from the text of the
//! ftrace `trace` file (see `include/trace/events/blk_interposer.h` in
//! `kmod/patches/`). One line per event:
//!
//! ```text
//!   fio-93   [001] ..... 4711: blk_interposer_bio: 251,1 enter bio=00000000a1b2c3d4 val=0 arg=(null)
//!   sh-1     [000] ..... 4712: blk_interposer_dev: 251,1 freeze_start val=1 arg=(null)
//!   sh-1     [000] ..... 4713: blk_interposer_prim: 251,1 filter_alloc(I) ret=0
//! ```
//!
//! Pointers are the kernel's hashed `%p` values: identities, not addresses.
//! Lines starting with `#` and lines of other events are skipped.

use std::fmt;

/// What an event reports (the kernel's `enum blk_interposer_event`, and the
/// module's primitive calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ev {
    Enter,
    TestMarker,
    Read,
    SetMarker,
    Redirect,
    KeyOff,
    Submit,
    Exit,
    Endio,
    Clone,
    /// O split the bio to its limits: the front (the argument) goes on into
    /// O, chained to the bio, whose rest passes the hook again.
    Split,
    FreezeStart,
    FreezeWait,
    Unfreeze,
    PtrSet,
    PtrClear,
    Lock,
    Unlock,
    /// `blk_interposer_prim`: a primitive the interposer's driver ran.
    Prim,
}

impl Ev {
    const NAMES: [(&'static str, Ev); 18] = [
        ("enter", Ev::Enter),
        ("test_marker", Ev::TestMarker),
        ("read_interposer", Ev::Read),
        ("set_marker", Ev::SetMarker),
        ("redirect", Ev::Redirect),
        ("key_off", Ev::KeyOff),
        ("driver_submit", Ev::Submit),
        ("exit", Ev::Exit),
        ("endio", Ev::Endio),
        ("clone", Ev::Clone),
        ("split", Ev::Split),
        ("freeze_start", Ev::FreezeStart),
        ("freeze_wait", Ev::FreezeWait),
        ("unfreeze", Ev::Unfreeze),
        ("ptr_set", Ev::PtrSet),
        ("ptr_clear", Ev::PtrClear),
        ("lock", Ev::Lock),
        ("unlock", Ev::Unlock),
    ];

    fn by_name(s: &[u8]) -> Option<Ev> {
        Self::NAMES
            .iter()
            .find(|(n, _)| n.as_bytes() == s)
            .map(|&(_, e)| e)
    }

    /// The name the kernel prints.
    pub fn name(self) -> &'static str {
        match self {
            Ev::Prim => "prim",
            e => {
                Self::NAMES
                    .iter()
                    .find(|(_, x)| *x == e)
                    .expect("every event but Prim is named")
                    .0
            }
        }
    }

    /// An event about one bio (`blk_interposer_bio`).
    pub fn is_bio(self) -> bool {
        matches!(
            self,
            Ev::Enter
                | Ev::TestMarker
                | Ev::Read
                | Ev::SetMarker
                | Ev::Redirect
                | Ev::KeyOff
                | Ev::Submit
                | Ev::Exit
                | Ev::Endio
                | Ev::Clone
                | Ev::Split
        )
    }

    /// Emitted before the step it reports gives something back (the queue
    /// reference, open_mutex, a frozen queue): the step itself happens after
    /// the event, so replay never moves it earlier.
    pub fn is_release(self) -> bool {
        matches!(self, Ev::Exit | Ev::Unlock | Ev::Unfreeze)
    }
}

/// One event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// The line in the trace file (1-based).
    pub line: u32,
    pub pid: u32,
    /// The device, as the kernel's `MKDEV(major, minor)`.
    pub dev: u32,
    pub ev: Ev,
    /// The bio (bio events; 0 otherwise).
    pub bio: u64,
    /// `val=` of bio and device events, `ret=` of primitives.
    pub val: i32,
    /// `arg=`: the interposer read, called, set or cleared, or the clone made.
    pub arg: u64,
    /// The primitive's name, an index into [`Trace::names`].
    pub name: u16,
}

/// A device number as `major:minor`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Dev(pub u32);

impl Dev {
    pub fn new(major: u32, minor: u32) -> Dev {
        Dev((major << 20) | minor)
    }
    /// `251:1` (as /sys/block/*/dev has it) or `251,1` (as the trace has it).
    pub fn parse(s: &str) -> Option<Dev> {
        let (a, b) = s.split_once([':', ','])?;
        Some(Dev::new(a.trim().parse().ok()?, b.trim().parse().ok()?))
    }
}

impl fmt::Display for Dev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 20, self.0 & 0xfffff)
    }
}

/// A parsed trace: its events in order, and the text they came from.
pub struct Trace {
    pub text: String,
    pub events: Vec<Event>,
    /// Byte ranges of each event's line in `text`.
    pub spans: Vec<(u32, u32)>,
    /// The primitives' names (`blk_interposer_prim`).
    pub names: Vec<String>,
}

impl fmt::Debug for Trace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Trace {{ {} events, devices {:?} }}",
            self.events.len(),
            self.devices()
        )
    }
}

/// A line that names a `blk_interposer` event but cannot be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub text: String,
    pub why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}: `{}`", self.line, self.why, self.text)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn hex(s: &[u8]) -> Option<u64> {
    if s == b"(null)" {
        return Some(0);
    }
    if s.is_empty() || s.len() > 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in s {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => return None,
        };
        v = (v << 4) | d as u64;
    }
    Some(v)
}

fn dec(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    let mut v = 0i64;
    for &c in digits {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as i64;
    }
    Some(if neg { -v } else { v })
}

/// `key=value` at the start of `s`: the value, up to the next space.
fn field<'a>(s: &'a [u8], key: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let rest = s.strip_prefix(key)?;
    let end = rest.iter().position(|&c| c == b' ').unwrap_or(rest.len());
    Some((
        &rest[..end],
        rest[end..].strip_prefix(b" ").unwrap_or(&rest[end..]),
    ))
}

impl Trace {
    /// Read the events of an ftrace text trace. Lines of other events and
    /// comments are skipped; a `blk_interposer` line that cannot be read is an
    /// error that names the line.
    pub fn parse(text: String) -> Result<Trace, ParseError> {
        let mut events = Vec::new();
        let mut spans = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let bytes = text.as_bytes();
        let mut start = 0usize;
        let mut lineno = 0u32;
        while start < bytes.len() {
            lineno += 1;
            let end = bytes[start..]
                .iter()
                .position(|&c| c == b'\n')
                .map_or(bytes.len(), |p| start + p);
            let line = &bytes[start..end];
            let span = (start as u32, end as u32);
            start = end + 1;
            if line.first() == Some(&b'#') {
                continue;
            }
            let Some(at) = find(line, b": blk_interposer_") else {
                continue;
            };
            let bad = |why: &str| ParseError {
                line: lineno as usize,
                text: String::from_utf8_lossy(line).into_owned(),
                why: why.to_string(),
            };
            // "TASK-PID [CPU] FLAGS TIMESTAMP: blk_interposer_X: ..." (the trace
            // file), or "[ SECONDS] TASK-PID CPUFLAGS TIMESTAMP : ..." (the
            // kernel's dump of its buffer to the console at a panic).
            let mut head = line[..at].trim_ascii_start();
            if head.first() == Some(&b'[') {
                if let Some(close) = head.iter().position(|&c| c == b']') {
                    head = head[close + 1..].trim_ascii_start();
                }
            }
            let task = match find(head, b" [") {
                Some(bracket) => head[..bracket].trim_ascii_end(),
                None => {
                    let end = head
                        .iter()
                        .position(|&c| c == b' ')
                        .ok_or_else(|| bad("no `[CPU]` after the task"))?;
                    &head[..end]
                }
            };
            let dash = task
                .iter()
                .rposition(|&c| c == b'-')
                .ok_or_else(|| bad("no `-PID` after the task's name"))?;
            let pid = dec(&task[dash + 1..])
                .filter(|&p| p >= 0 && p <= u32::MAX as i64)
                .ok_or_else(|| bad("the task's PID is not a number"))? as u32;
            let rest = &line[at + b": blk_interposer_".len()..];
            let colon = rest
                .iter()
                .position(|&c| c == b':')
                .ok_or_else(|| bad("no `:` after the event's name"))?;
            let kind = &rest[..colon];
            let rest = rest[colon + 1..].trim_ascii_start();
            let sp = rest
                .iter()
                .position(|&c| c == b' ')
                .ok_or_else(|| bad("nothing after the device"))?;
            let dev = Dev::parse(std::str::from_utf8(&rest[..sp]).unwrap_or(""))
                .ok_or_else(|| bad("the device is not MAJOR,MINOR"))?;
            let rest = &rest[sp + 1..];
            let mut e = Event {
                line: lineno,
                pid,
                dev: dev.0,
                ev: Ev::Prim,
                bio: 0,
                val: 0,
                arg: 0,
                name: 0,
            };
            let num = |v: &[u8], what: &str| {
                dec(v)
                    .filter(|&x| x >= i32::MIN as i64 && x <= i32::MAX as i64)
                    .map(|x| x as i32)
                    .ok_or_else(|| bad(&format!("`{what}=` is not a number")))
            };
            match kind {
                b"bio" | b"dev" => {
                    let sp = rest
                        .iter()
                        .position(|&c| c == b' ')
                        .ok_or_else(|| bad("nothing after the step"))?;
                    e.ev = Ev::by_name(&rest[..sp]).ok_or_else(|| bad("an unknown step"))?;
                    if e.ev.is_bio() != (kind == b"bio") {
                        return Err(bad("a step of the other event"));
                    }
                    let mut rest = &rest[sp + 1..];
                    if kind == b"bio" {
                        let (v, r) = field(rest, b"bio=").ok_or_else(|| bad("no `bio=`"))?;
                        e.bio = hex(v).ok_or_else(|| bad("`bio=` is not a pointer"))?;
                        rest = r;
                    }
                    let (v, r) = field(rest, b"val=").ok_or_else(|| bad("no `val=`"))?;
                    e.val = num(v, "val")?;
                    let (v, _) = field(r, b"arg=").ok_or_else(|| bad("no `arg=`"))?;
                    e.arg = hex(v).ok_or_else(|| bad("`arg=` is not a pointer"))?;
                }
                b"prim" => {
                    let r = find(rest, b" ret=").ok_or_else(|| bad("no `ret=`"))?;
                    let name = std::str::from_utf8(&rest[..r])
                        .map_err(|_| bad("the primitive's name is not UTF-8"))?;
                    e.val = num(rest[r + 5..].trim_ascii_end(), "ret")?;
                    e.name = match names.iter().position(|n| n == name) {
                        Some(i) => i as u16,
                        None => {
                            names.push(name.to_string());
                            (names.len() - 1) as u16
                        }
                    };
                }
                _ => return Err(bad("an unknown blk_interposer event")),
            }
            events.push(e);
            spans.push(span);
        }
        Ok(Trace {
            text,
            events,
            spans,
            names,
        })
    }

    /// The text of event `i`'s line.
    pub fn line_text(&self, i: usize) -> &str {
        let (a, b) = self.spans[i];
        self.text[a as usize..b as usize].trim()
    }

    /// The devices the trace has events for, with their counts.
    pub fn devices(&self) -> Vec<(Dev, usize)> {
        let mut v: Vec<(Dev, usize)> = Vec::new();
        for e in &self.events {
            match v.iter_mut().find(|(d, _)| d.0 == e.dev) {
                Some((_, n)) => *n += 1,
                None => v.push((Dev(e.dev), 1)),
            }
        }
        v
    }
}
