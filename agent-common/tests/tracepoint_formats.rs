//! The tracepoint fields the probes read (`agent_common::tracepoints`) sit
//! where the running kernel's tracefs `format` files say. Needs tracefs
//! mounted (root; `cargo xtask setup` mounts it).

use std::{fs, path::Path};

use agent_common::tracepoints::{ALL, Field};

const EVENTS: &str = "/sys/kernel/tracing/events";

/// (offset, size) of field `name` in a `format` file, from its line
/// `field:<type> <name>; offset:<offset>; size:<size>; signed:<0|1>;`.
fn layout(format: &str, name: &str) -> Option<(usize, usize)> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let declaration = parts.next()?.strip_prefix("field:")?;
        // `void * ctx`, `char comm[16]`: the name is the last word, before any `[`.
        let field = declaration.rsplit([' ', '*']).next()?.split('[').next()?;
        if field != name {
            return None;
        }
        let offset = parts.next()?.strip_prefix("offset:")?.parse().ok()?;
        let size = parts.next()?.strip_prefix("size:")?.parse().ok()?;
        Some((offset, size))
    })
}

/// The tracepoints `field` is read from; `category/prefix*` stands for all
/// of that prefix.
fn events(field: &Field) -> Vec<String> {
    let mut events = Vec::new();
    for &event in field.events {
        let Some(prefix) = event.strip_suffix('*') else {
            events.push(event.to_owned());
            continue;
        };
        let (category, name) = prefix.split_once('/').expect("category/name");
        let entries = fs::read_dir(format!("{EVENTS}/{category}")).expect("the tracepoint category");
        let mut matching: Vec<String> = entries
            .map(|entry| entry.expect("a directory entry").file_name().to_string_lossy().into_owned())
            .filter(|entry| entry.starts_with(name))
            .map(|entry| format!("{category}/{entry}"))
            .collect();
        assert!(!matching.is_empty(), "no tracepoint {event}");
        matching.sort();
        events.extend(matching);
    }
    events
}

#[test]
fn every_field_the_probes_read_is_where_tracefs_says() {
    assert!(Path::new(EVENTS).is_dir(), "tracefs is not mounted at /sys/kernel/tracing (cargo xtask setup mounts it)");
    for field in &ALL {
        for event in events(field) {
            let path = format!("{EVENTS}/{event}/format");
            let format = fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
            assert_eq!(
                layout(&format, field.name),
                Some((field.offset, field.size)),
                "{event}: field {} (offset, size) in {path}",
                field.name
            );
        }
    }
}

#[test]
fn format_lines_are_read_by_the_fields_last_word() {
    let format = "\tfield:void * ctx;\toffset:8;\tsize:8;\tsigned:0;\n\
                  \tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
                  \tfield:u8 opcode;\toffset:32;\tsize:1;\tsigned:0;\n";
    assert_eq!(layout(format, "ctx"), Some((8, 8)));
    assert_eq!(layout(format, "comm"), Some((8, 16)));
    assert_eq!(layout(format, "opcode"), Some((32, 1)));
    assert_eq!(layout(format, "code"), None);
}
