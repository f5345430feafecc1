//! Every ABI constant and every field of every ABI structure, as data: what the
//! Python package builds its constants and struct layouts from, and what
//! `tests/abi_matches_header.rs` compares with the C headers item by item.
//!
//! build.rs generates the lists from `src/abi.rs` and `src/socket_proto.rs`
//! (each `pub const` and each `#[repr(C)]` struct, in source order), so an item
//! added there is in the table without anyone listing it. Offsets and sizes are
//! `offset_of!`/`size_of` over the types themselves.

/// The value of a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value {
    Int(i64),
    Str(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Constant {
    pub name: &'static str,
    pub value: Value,
}

/// One field: `count` elements of `ty`, which is a scalar (`u8`, `u16`, `i16`,
/// `u32`, `i32`, `u64`, `i64`) or the C name of another struct of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub name: &'static str,
    pub offset: usize,
    pub size: usize,
    pub ty: &'static str,
    pub count: usize,
}

/// One structure, by its C name (`struct <name>`), fields in declaration order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Struct {
    pub name: &'static str,
    pub size: usize,
    pub fields: &'static [Field],
}

include!(concat!(env!("OUT_DIR"), "/abi_table.rs"));
