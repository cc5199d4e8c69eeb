use super::*;

fn scan(views: &[(View, &[&str])]) -> Scan {
    Scan {
        views: views
            .iter()
            .map(|(v, names)| (*v, names.iter().map(|n| n.to_string()).collect()))
            .collect(),
    }
}

const ALL_AGREE: &[(View, &[&str])] = &[
    (View::Registry, &["ext4", "hide"]),
    (View::ProcModules, &["ext4", "hide"]),
    (View::SysModule, &["ext4", "hide"]),
    (View::ModuleList, &["ext4", "hide"]),
];

const UNLINKED: &[(View, &[&str])] = &[
    (View::Registry, &["ext4", "hide"]),
    (View::ProcModules, &["ext4"]),
    (View::SysModule, &["ext4", "hide"]),
    (View::ModuleList, &["ext4"]),
];

#[test]
fn a_module_off_the_list_is_reported_once_two_scans_agree() {
    let mut h = HiddenModules::default();
    assert!(h.scan(&scan(ALL_AGREE)).is_empty());
    assert!(h.scan(&scan(UNLINKED)).is_empty(), "one scan is a race");
    let found = h.scan(&scan(UNLINKED));
    assert_eq!(
        found,
        [HiddenModule {
            name: "hide".into(),
            present_in: vec![View::Registry, View::SysModule],
            missing_from: vec![View::ProcModules, View::ModuleList],
        }]
    );
    assert_eq!(
        found[0].evidence(),
        "listed by modscope's registry, /sys/module; missing from /proc/modules, the kernel's module list"
    );
    assert!(h.scan(&scan(UNLINKED)).is_empty(), "reported once");
}

#[test]
fn loads_and_unloads_between_scans_are_not_evidence() {
    let mut h = HiddenModules::default();
    // Loaded between the registry's read and /proc/modules' in both scans.
    let racing: &[(View, &[&str])] = &[
        (View::Registry, &["ext4"]),
        (View::ProcModules, &["ext4", "calls"]),
        (View::SysModule, &["ext4", "calls"]),
    ];
    h.scan(&scan(racing));
    h.churn("calls");
    h.churn("calls");
    assert!(
        h.scan(&scan(racing)).is_empty(),
        "it loaded and unloaded meanwhile"
    );
    // A name that stops churning and still disagrees is evidence.
    assert_eq!(h.scan(&scan(racing)).len(), 1);
}

#[test]
fn a_new_pattern_is_a_new_finding() {
    let mut h = HiddenModules::default();
    h.scan(&scan(UNLINKED));
    assert_eq!(h.scan(&scan(UNLINKED)).len(), 1);
    // It now takes itself out of sysfs too.
    let deeper: &[(View, &[&str])] = &[
        (View::Registry, &["ext4", "hide"]),
        (View::ProcModules, &["ext4"]),
        (View::SysModule, &["ext4"]),
        (View::ModuleList, &["ext4"]),
    ];
    assert!(h.scan(&scan(deeper)).is_empty());
    let found = h.scan(&scan(deeper));
    assert_eq!(found[0].present_in, [View::Registry]);
}

#[test]
fn a_view_that_could_not_be_read_is_not_a_disagreement() {
    let mut h = HiddenModules::default();
    let without_list: &[(View, &[&str])] = &[
        (View::Registry, &["ext4"]),
        (View::ProcModules, &["ext4"]),
        (View::SysModule, &["ext4"]),
    ];
    h.scan(&scan(without_list));
    assert!(h.scan(&scan(without_list)).is_empty());
}

fn key(caller: u64, func_ip: u64) -> UnownedCallKey {
    UnownedCallKey { caller, func_ip }
}

#[test]
fn unowned_sites_are_reported_when_their_owner_is_unknown_and_their_count_grows() {
    let mut u = UnownedCalls::default();
    let mut counts = BTreeMap::from([(key(0xc000_1000, 0x8100), 5), (key(0xc000_9000, 0x8100), 7)]);
    let undecided: Vec<u64> = u.undecided(&counts).collect();
    assert_eq!(undecided, [0xc000_1000, 0xc000_9000]);
    u.decide(0xc000_1000, Owner::Unknown(Some("hide".into())));
    u.decide(0xc000_9000, Owner::Accounted);
    assert_eq!(u.undecided(&counts).count(), 0);
    let sites = u.updates(&counts);
    assert_eq!(
        sites,
        [UnownedSite {
            key: key(0xc000_1000, 0x8100),
            count: 5,
            module: Some("hide".into()),
        }]
    );
    assert!(u.updates(&counts).is_empty(), "nothing new");
    counts.insert(key(0xc000_1000, 0x8100), 9);
    assert_eq!(u.updates(&counts)[0].count, 9);
}

#[test]
fn a_kernel_symbol_below_a_hidden_modules_text_does_not_own_its_calls() {
    let (base, site) = (0xc000_4000, 0xc000_4123);
    // A BPF trampoline a page below the module's text: out of reach.
    assert_eq!(kernel_symbol_reach(site, 0x10000, Some(base)), 0x124);
    assert_eq!(kernel_symbol_reach(site, 0x10000, None), 0x10000);
    assert_eq!(kernel_symbol_reach(site, 0x100, Some(base)), 0x100);
    assert_eq!(kernel_symbol_reach(site, 0x10000, Some(site + 1)), 0x10000);
    // Who owns it then.
    assert_eq!(
        Owner::of(false, false, Some("hide")),
        Owner::Unknown(Some("hide".into()))
    );
    assert_eq!(Owner::of(false, false, None), Owner::Unknown(None));
    assert_eq!(Owner::of(false, true, Some("hide")), Owner::Accounted);
    assert_eq!(Owner::of(true, false, Some("hide")), Owner::Accounted);
}
