//! Compiles the C headers (guest/include/vmrpc/abi.h and socket_proto.h, with
//! their generated parts) with the system C compiler and checks, for every entry
//! of `table` (so for every constant and every field build.rs found in the
//! Rust sources), that C agrees: each constant's value; each struct's size; each
//! field's offset, size, element type and count. Also the few things C states by
//! hand (function-like macros, limits written with sizeof), and that C defines
//! no `VMRPC_*` constant the Rust sources lack.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use guest_kmod_bindings::table::{Value, CONSTANTS, STRUCTS};
use guest_kmod_bindings::{vmrpc_console_write, vmrpc_evq_slot_size, vmrpc_version};

const HEADERS: &str = "#include <stdio.h>\n#include <stddef.h>\n#include <stdint.h>\n\
                       #include \"vmrpc/abi.h\"\n#include \"vmrpc/socket_proto.h\"\n";

fn include_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guest/include")
}

fn cc() -> String {
    std::env::var("CC").unwrap_or_else(|_| "cc".into())
}

/// (key, C expression printed as a number), one per thing C must agree on.
fn probes() -> Vec<(String, String, String)> {
    let mut p = Vec::new();
    let mut num = |key: String, expr: String, rust: String| p.push((key, expr, rust));
    for c in CONSTANTS {
        match c.value {
            Value::Int(v) => num(c.name.into(), c.name.into(), v.to_string()),
            Value::Str(_) => {} // compared as text below
        }
    }
    // `_Generic` names a field's C type, so a u32 field that C declares int32_t
    // (same size, same offset) is caught too.
    let mut generic = String::from(
        "_Generic((X), uint8_t: 1, uint16_t: 2, int16_t: 3, uint32_t: 4, int32_t: 5, \
         uint64_t: 6, int64_t: 7",
    );
    for (i, s) in STRUCTS.iter().enumerate() {
        generic += &format!(", struct {}: {}", s.name, 100 + i);
    }
    generic += ")";
    let code = |ty: &str| match ty {
        "u8" => 1,
        "u16" => 2,
        "i16" => 3,
        "u32" => 4,
        "i32" => 5,
        "u64" => 6,
        "i64" => 7,
        other => 100 + STRUCTS.iter().position(|s| s.name == other).expect(other),
    };
    for s in STRUCTS {
        let name = s.name;
        num(
            format!("sizeof {name}"),
            format!("sizeof(struct {name})"),
            s.size.to_string(),
        );
        for f in s.fields {
            let field = format!("((struct {name} *)0)->{}", f.name);
            let key = format!("{name}.{}", f.name);
            num(
                format!("offsetof {key}"),
                format!("offsetof(struct {name}, {})", f.name),
                f.offset.to_string(),
            );
            num(
                format!("sizeof {key}"),
                format!("sizeof({field})"),
                f.size.to_string(),
            );
            let elem = if f.count > 1 {
                format!("{field}[0]")
            } else {
                field.clone()
            };
            num(
                format!("type {key}"),
                generic.replace("(X)", &format!("({elem})")),
                code(f.ty).to_string(),
            );
            num(
                format!("count {key}"),
                format!("sizeof({field}) / sizeof({elem})"),
                f.count.to_string(),
            );
        }
    }
    // The function-like macros C keeps by hand, against the Rust functions.
    let calls: [(&str, u64); 6] = [
        ("VMRPC_VERSION(3, 7)", vmrpc_version(3, 7).into()),
        (
            "VMRPC_VERSION(1, 0x1ffff)",
            vmrpc_version(1, 0x1ffff).into(),
        ),
        (
            "VMRPC_CONSOLE_WRITE(0x123456789abcull, 77)",
            vmrpc_console_write(0x1234_5678_9abc, 77),
        ),
        ("VMRPC_EVQ_SLOT_SIZE(1)", vmrpc_evq_slot_size(1).into()),
        ("VMRPC_EVQ_SLOT_SIZE(64)", vmrpc_evq_slot_size(64).into()),
        (
            "VMRPC_EVQ_SLOT_SIZE(65528)",
            vmrpc_evq_slot_size(65528).into(),
        ),
    ];
    for (expr, rust) in calls {
        num(expr.into(), expr.into(), (rust as i64).to_string());
    }
    p
}

fn compile_and_run(src: &str, name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("vmrpc-abi-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let c_file = dir.join("probe.c");
    let exe = dir.join("probe");
    std::fs::write(&c_file, src).unwrap();
    let status = Command::new(cc())
        .args(["-std=c11", "-Wall", "-Werror", "-I"])
        .arg(include_dir())
        .arg(&c_file)
        .arg("-o")
        .arg(&exe)
        .status()
        .expect("a C compiler (cc) is needed to check the ABI headers");
    assert!(
        status.success(),
        "the probe of the ABI headers does not compile"
    );
    let out = Command::new(&exe).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_constant_and_field_agrees_with_the_c_headers() {
    let probes = probes();
    let mut src = format!("{HEADERS}int main(void) {{\n");
    for (key, expr, _) in &probes {
        src += &format!("  printf(\"%s=%lld\\n\", \"{key}\", (long long)({expr}));\n");
    }
    for c in CONSTANTS {
        if let Value::Str(_) = c.value {
            src += &format!("  printf(\"%s=%s\\n\", \"{0}\", {0});\n", c.name);
        }
    }
    src += "  return 0;\n}\n";
    let text = compile_and_run(&src, "values");
    let c: BTreeMap<&str, &str> = text.lines().filter_map(|l| l.split_once('=')).collect();

    let mut wrong = Vec::new();
    for (key, _, rust) in &probes {
        if c[key.as_str()] != rust {
            wrong.push(format!("{key}: C {}, Rust {rust}", c[key.as_str()]));
        }
    }
    for constant in CONSTANTS {
        if let Value::Str(s) = constant.value {
            if c[constant.name] != s {
                wrong.push(format!(
                    "{}: C {:?}, Rust {s:?}",
                    constant.name, c[constant.name]
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "ABI mismatch:\n{}", wrong.join("\n"));
    // Not vacuous: every constant and every field was compared.
    let fields: usize = STRUCTS.iter().map(|s| s.fields.len()).sum();
    assert!(
        CONSTANTS.len() > 80 && fields > 100,
        "{} {fields}",
        CONSTANTS.len()
    );
}

/// Fields in offset order cover each struct exactly: no implicit padding (what
/// `ByteValued` relies on) and no field the table could have missed.
#[test]
fn fields_cover_every_struct_without_gaps() {
    for s in STRUCTS {
        let mut at = 0;
        let mut fields: Vec<_> = s.fields.iter().collect();
        fields.sort_by_key(|f| f.offset);
        for f in fields {
            assert_eq!(
                f.offset, at,
                "{}.{}: a gap or an overlap before it",
                s.name, f.name
            );
            at += f.size;
        }
        assert_eq!(at, s.size, "{}: padding after the last field", s.name);
    }
}

/// Every `VMRPC_*` constant the C headers define comes from the Rust sources:
/// none was added to C alone. (Function-like macros and include guards aside.)
#[test]
fn c_defines_no_constant_the_rust_sources_lack() {
    let out = Command::new(cc())
        .args(["-std=c11", "-dM", "-E", "-I"])
        .arg(include_dir())
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(HEADERS.as_bytes())?;
            child.wait_with_output()
        })
        .expect("a C compiler (cc)");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rust: BTreeSet<&str> = CONSTANTS.iter().map(|c| c.name).collect();
    let only_c: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#define "))
        .map(|l| l.split(' ').next().unwrap())
        .filter(|name| name.starts_with("VMRPC_") && !name.contains('(') && !name.ends_with("_H"))
        .filter(|name| !rust.contains(name))
        .collect();
    assert!(only_c.is_empty(), "C-only constants: {only_c:?}");
}
