//! Generates `table::CONSTANTS` and `table::STRUCTS` from the ABI sources: every
//! `pub const` and every `#[repr(C)]` struct of `src/abi.rs` and
//! `src/socket_proto.rs`, in source order. Values, offsets and sizes are left
//! to the compiler (`as i64`, `offset_of!`, `size_of`); this only lists names
//! and says which scalar or struct each field holds.

use std::fmt::Write as _;
use std::path::Path;

/// (module path in the crate, source file)
const SOURCES: [(&str, &str); 2] = [
    ("crate::abi", "src/abi.rs"),
    ("crate::socket_proto", "src/socket_proto.rs"),
];

const SCALARS: [&str; 7] = ["u8", "u16", "i16", "u32", "i32", "u64", "i64"];

fn main() {
    let mut constants = String::new();
    let mut structs = String::new();
    for (module, file) in SOURCES {
        println!("cargo::rerun-if-changed={file}");
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
        let ast = syn::parse_file(&text).unwrap_or_else(|e| panic!("{file}: {e}"));
        for item in &ast.items {
            match item {
                syn::Item::Const(c) => constant(&mut constants, module, c),
                syn::Item::Struct(s) if is_repr_c(s) => structure(&mut structs, module, s),
                syn::Item::Struct(s) => panic!("{file}: struct {} is not #[repr(C)]", s.ident),
                _ => {}
            }
        }
    }
    let out = format!(
        "/// Every constant of the ABI, in source order.\n\
         pub static CONSTANTS: &[Constant] = &[\n{constants}];\n\n\
         /// Every structure of the ABI, in source order.\n\
         pub static STRUCTS: &[Struct] = &[\n{structs}];\n"
    );
    let path = Path::new(&std::env::var("OUT_DIR").unwrap()).join("abi_table.rs");
    std::fs::write(path, out).unwrap();
}

fn constant(out: &mut String, module: &str, c: &syn::ItemConst) {
    let name = c.ident.to_string();
    let value = match &*c.ty {
        syn::Type::Reference(_) => format!("Value::Str({module}::{name})"),
        _ => format!("Value::Int({module}::{name} as i64)"),
    };
    writeln!(out, "    Constant {{ name: {name:?}, value: {value} }},").unwrap();
}

fn is_repr_c(s: &syn::ItemStruct) -> bool {
    s.attrs.iter().any(|a| {
        a.path().is_ident("repr") && a.parse_args::<syn::Ident>().is_ok_and(|arg| arg == "C")
    })
}

fn structure(out: &mut String, module: &str, s: &syn::ItemStruct) {
    let name = s.ident.to_string();
    let ty = format!("{module}::{name}");
    writeln!(
        out,
        "    Struct {{ name: {name:?}, size: size_of::<{ty}>(), fields: &["
    )
    .unwrap();
    for field in &s.fields {
        let ident = field.ident.as_ref().expect("ABI structs have named fields");
        let (elem, count) = element(&field.ty, &name);
        let field_name = syn::ext::IdentExt::unraw(ident).to_string();
        writeln!(
            out,
            "        Field {{ name: {field_name:?}, offset: core::mem::offset_of!({ty}, {ident}), \
             size: size_of::<{field_ty}>(), ty: {elem:?}, count: {count} }},",
            field_ty = type_text(module, &elem, count, &field.ty),
        )
        .unwrap();
    }
    writeln!(out, "    ]}},").unwrap();
}

/// The element type of a field (a scalar or a struct's name) and how many.
fn element(ty: &syn::Type, owner: &str) -> (String, usize) {
    match ty {
        syn::Type::Path(p) => {
            let ident = p
                .path
                .get_ident()
                .unwrap_or_else(|| panic!("{owner}: a plain type name"));
            (ident.to_string(), 1)
        }
        syn::Type::Array(a) => {
            let (elem, 1) = element(&a.elem, owner) else {
                panic!("{owner}: arrays of arrays are not in the ABI");
            };
            assert!(
                SCALARS.contains(&elem.as_str()),
                "{owner}: arrays hold scalars"
            );
            let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Int(n),
                ..
            }) = &a.len
            else {
                panic!("{owner}: array lengths are literals");
            };
            (elem, n.base10_parse().unwrap())
        }
        _ => panic!("{owner}: field types are scalars, arrays of scalars or ABI structs"),
    }
}

/// The field's Rust type as source text, for `size_of` in the table.
fn type_text(module: &str, elem: &str, count: usize, ty: &syn::Type) -> String {
    let elem = if SCALARS.contains(&elem) {
        elem.to_string()
    } else {
        format!("{module}::{elem}")
    };
    match ty {
        syn::Type::Array(_) => format!("[{elem}; {count}]"),
        _ => elem,
    }
}
