//! `Module.symvers`: every symbol the kernel and its modules export, with
//! its CRC, exporter, export type and namespace:
//! `0xCRC<TAB>symbol<TAB>module<TAB>EXPORT_SYMBOL[_GPL]<TAB>[namespace]`.

use rustc_hash::FxHashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    Any,
    GplOnly,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub crc: u32,
    /// `vmlinux` or the exporting module's path.
    pub module: String,
    pub kind: ExportKind,
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Symvers {
    exports: FxHashMap<Box<str>, Export>,
    pub malformed: Vec<(usize, String)>,
}

impl Symvers {
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        out.exports.reserve(text.len() / 60);
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match parse_line(line) {
                Some((name, export)) => {
                    out.exports.insert(name.into(), export);
                }
                None => out.malformed.push((i + 1, line.to_owned())),
            }
        }
        out
    }

    pub fn get(&self, symbol: &str) -> Option<&Export> {
        self.exports.get(symbol)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Export)> {
        self.exports.iter().map(|(k, v)| (k.as_ref(), v))
    }

    pub fn len(&self) -> usize {
        self.exports.len()
    }

    pub fn is_empty(&self) -> bool {
        self.exports.is_empty()
    }
}

fn parse_line(line: &str) -> Option<(&str, Export)> {
    let mut f = line.split('\t');
    let crc = u32::from_str_radix(f.next()?.strip_prefix("0x")?, 16).ok()?;
    let name = f.next().filter(|n| !n.is_empty())?;
    let module = f.next()?.to_owned();
    let kind = match f.next()? {
        "EXPORT_SYMBOL" => ExportKind::Any,
        "EXPORT_SYMBOL_GPL" => ExportKind::GplOnly,
        _ => return None,
    };
    let namespace = f
        .next()
        .map(str::trim)
        .filter(|ns| !ns.is_empty())
        .map(|ns| ns.trim_matches('"').to_owned());
    Some((
        name,
        Export {
            crc,
            module,
            kind,
            namespace,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_real_lines() {
        let s = Symvers::parse(
            "0x4c9d28b0\tphys_base\tvmlinux\tEXPORT_SYMBOL\t\n\
             0x039823de\tinit_uts_ns\tvmlinux\tEXPORT_SYMBOL_GPL\t\n\
             0x12345678\tusb_stor_probe1\tdrivers/usb/storage/usb-storage\tEXPORT_SYMBOL_GPL\tUSB_STORAGE\n",
        );
        assert_eq!(s.len(), 3);
        assert_eq!(s.get("phys_base").unwrap().crc, 0x4c9d28b0);
        assert_eq!(s.get("init_uts_ns").unwrap().kind, ExportKind::GplOnly);
        let ns = s.get("usb_stor_probe1").unwrap();
        assert_eq!(ns.namespace.as_deref(), Some("USB_STORAGE"));
        assert_eq!(ns.module, "drivers/usb/storage/usb-storage");
        assert!(s.malformed.is_empty());
    }

    #[test]
    fn garbage_is_reported_not_fatal() {
        let s = Symvers::parse(
            "0xzz\tbad\tvmlinux\tEXPORT_SYMBOL\t\nnonsense\n0x1\tok\tvmlinux\tEXPORT_SYMBOL\n",
        );
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.malformed.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }
}
