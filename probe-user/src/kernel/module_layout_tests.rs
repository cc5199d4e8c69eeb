//! Layout extraction over hand-built BTF blobs shaped like the two kernel
//! layouts, with offsets chosen so that every field lands somewhere distinct.

use super::*;

/// A minimal BTF writer: just the kinds these tests need.
#[derive(Default)]
struct BtfBuilder {
    types: Vec<u8>,
    strings: Vec<u8>,
    count: u32,
}

const INT: u32 = 1;
const PTR: u32 = 2;
const ARRAY: u32 = 3;
const STRUCT: u32 = 4;
const ENUM: u32 = 6;

impl BtfBuilder {
    fn new() -> Self {
        Self {
            strings: vec![0],
            ..Default::default()
        }
    }
    fn str(&mut self, s: &str) -> u32 {
        if s.is_empty() {
            return 0;
        }
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }
    fn words(&mut self, words: &[u32]) {
        for w in words {
            self.types.extend_from_slice(&w.to_le_bytes());
        }
    }
    fn header(&mut self, name: &str, kind: u32, vlen: u32, size_or_type: u32) -> u32 {
        let name = self.str(name);
        self.words(&[name, (kind << 24) | vlen, size_or_type]);
        self.count += 1;
        self.count
    }
    fn int(&mut self, name: &str, size: u32) -> u32 {
        let id = self.header(name, INT, 0, size);
        self.words(&[size * 8]);
        id
    }
    fn ptr(&mut self, to: u32) -> u32 {
        self.header("", PTR, 0, to)
    }
    fn array(&mut self, elem: u32, index: u32, n: u32) -> u32 {
        let id = self.header("", ARRAY, 0, 0);
        self.words(&[elem, index, n]);
        id
    }
    /// Members are (name, type id, byte offset); type ids may be forward.
    fn strukt(&mut self, name: &str, size: u32, members: &[(&str, u32, u32)]) -> u32 {
        let id = self.header(name, STRUCT, members.len() as u32, size);
        for &(m, ty, off) in members {
            let m = self.str(m);
            self.words(&[m, ty, off * 8]);
        }
        id
    }
    fn enumeration(&mut self, name: &str, values: &[(&str, u32)]) -> u32 {
        let id = self.header(name, ENUM, values.len() as u32, 4);
        for &(v, val) in values {
            let v = self.str(v);
            self.words(&[v, val]);
        }
        id
    }
    fn build(self) -> Btf {
        let mut out = Vec::new();
        out.extend_from_slice(&0xeb9fu16.to_le_bytes());
        out.extend_from_slice(&[1, 0]);
        for w in [
            24u32,
            0,
            self.types.len() as u32,
            self.types.len() as u32,
            self.strings.len() as u32,
        ] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        Btf::from_bytes(&out).expect("test BTF parses")
    }
}

#[test]
fn legacy_core_layout_offsets() {
    let mut b = BtfBuilder::new();
    let u32_ = b.int("unsigned int", 4);
    let u64_ = b.int("long unsigned int", 8);
    let char_ = b.int("char", 1);
    let void_ptr = b.ptr(0);
    let name = b.array(char_, u32_, 56);
    let layout = b.strukt(
        "module_layout",
        64,
        &[
            ("base", void_ptr, 0),
            ("size", u32_, 8),
            ("text_size", u32_, 12),
        ],
    );
    b.strukt(
        "module",
        1024,
        &[
            ("state", u32_, 0),
            ("name", name, 24),
            ("core_layout", layout, 320),
            ("init_layout", layout, 384),
            ("taints", u64_, 600),
        ],
    );
    let got = module_layout(&b.build()).unwrap();
    assert_eq!(
        got,
        ModuleLayout {
            valid: 1,
            name: 24,
            taints: 600,
            core_text_base: 320,
            core_text_size: 332,
            init_text_base: 384,
            init_text_size: 396,
            text_size_width: 4,
        }
    );
}

#[test]
fn mem_array_layout_uses_enum_values_from_btf() {
    let mut b = BtfBuilder::new();
    let u32_ = b.int("unsigned int", 4);
    let u64_ = b.int("long unsigned int", 8);
    let char_ = b.int("char", 1);
    let void_ptr = b.ptr(0);
    let name = b.array(char_, u32_, 56);
    let mem_elem = b.strukt(
        "module_memory",
        80,
        &[("base", void_ptr, 0), ("size", u32_, 8)],
    );
    let mem = b.array(mem_elem, u32_, 7);
    // Deliberately not the kernel's numbering: the test proves the values are read.
    b.enumeration("mod_mem_type", &[("MOD_INIT_TEXT", 2), ("MOD_TEXT", 5)]);
    // `name` sits inside an anonymous union, as C allows.
    let anon = b.strukt("", 56, &[("name", name, 0)]);
    b.strukt(
        "module",
        2048,
        &[("", anon, 16), ("mem", mem, 400), ("taints", u64_, 1200)],
    );
    let got = module_layout(&b.build()).unwrap();
    assert_eq!(got.name, 16);
    assert_eq!(got.taints, 1200);
    assert_eq!(got.core_text_base, 400 + 5 * 80);
    assert_eq!(got.core_text_size, 400 + 5 * 80 + 8);
    assert_eq!(got.init_text_base, 400 + 2 * 80);
    assert_eq!(got.init_text_size, 400 + 2 * 80 + 8);
}

#[test]
fn missing_struct_module_is_named() {
    let mut b = BtfBuilder::new();
    b.int("int", 4);
    let err = module_layout(&b.build()).unwrap_err();
    assert_eq!(err.to_string(), "the kernel's BTF has no struct module");
}

#[test]
fn neither_layout_is_a_clear_error() {
    let mut b = BtfBuilder::new();
    let u64_ = b.int("long unsigned int", 8);
    b.strukt("module", 64, &[("name", u64_, 0), ("taints", u64_, 8)]);
    let err = module_layout(&b.build()).unwrap_err();
    assert!(matches!(err, BtfError::UnknownModuleLayout), "{err}");
}
