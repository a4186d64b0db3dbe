//! Endpoint impairment settings: which endpoint a PORT names, range checks,
//! persistence, and removal with the endpoint.

use ctl::Impairment;

use super::*;

fn delay(ms: u64) -> Impairment {
    Impairment { delay_us: ms * 1000, ..Impairment::default() }
}

#[test]
fn a_port_is_named_by_tap_network_and_sandbox_or_sandbox_alone() {
    let mut m = populated();
    let e1 = m.connect(Connect::new("a", "s1")).unwrap();
    let e2 = m.connect(Connect::new("a", "s2")).unwrap();
    let e3 = m.connect(Connect::new("b", "s2")).unwrap();
    assert_eq!(m.endpoint_for_port(&e1.host_tap_name).unwrap().id, e1.id);
    assert_eq!(m.endpoint_for_port("s1").unwrap().id, e1.id);
    assert_eq!(m.endpoint_for_port("a:s2").unwrap().id, e2.id);
    assert_eq!(m.endpoint_for_port("b:s2").unwrap().id, e3.id);
    let e = m.endpoint_for_port("s2").unwrap_err().to_string();
    assert!(e.contains("several endpoints") && e.contains(&e2.host_tap_name) && e.contains("b:"), "{e}");
    assert!(matches!(m.endpoint_for_port("gw:a"), Err(ModelError::NotImpairable(_))));
    assert!(matches!(m.endpoint_for_port("vx:192.0.2.1:4789"), Err(ModelError::NotImpairable(_))));
    assert!(matches!(m.endpoint_for_port("nope"), Err(ModelError::NoSuchEndpointPort(_))));
    assert!(matches!(m.endpoint_for_port("b:s1"), Err(ModelError::NotConnected { .. })));
}

#[test]
fn settings_are_checked_kept_cleared_and_go_with_the_endpoint() {
    let mut m = populated();
    let e = m.connect(Connect::new("a", "s1")).unwrap();
    let before = snapshot(&m);
    let bad = Impairment { loss_ppm: 2_000_000, ..delay(10) };
    assert_refused(&m.clone(), &before, m.clone().set_impairment("s1", Some(bad)), &["loss", "above 100%"]);
    assert_refused(
        &m.clone(),
        &before,
        m.clone().set_impairment("s1", Some(Impairment::default())),
        &["no impairment"],
    );
    assert_refused(&m.clone(), &before, m.clone().set_impairment("s9", Some(delay(1))), &["port s9 not found"]);

    let (ep, settings) = m.set_impairment("s1", Some(delay(10))).unwrap();
    assert_eq!(ep.impair, Some(delay(10)));
    assert_eq!(settings.unwrap().spec(), &delay(10));
    assert_eq!(m.endpoint(&e.id).unwrap().impair, Some(delay(10)));
    m.check_invariants().unwrap();
    // It is written with the endpoint and read back.
    let json = serde_json::to_string(&m).unwrap();
    assert!(json.contains(r#""impair":{"delay_us":10000}"#), "{json}");
    let back: Model = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);

    let (ep, settings) = m.set_impairment(&e.host_tap_name, None).unwrap();
    assert_eq!((ep.impair, settings), (None, None));
    assert_eq!(snapshot(&m), before, "cleared: as before");

    m.set_impairment("s1", Some(delay(5))).unwrap();
    m.disconnect("a", "s1").unwrap();
    let again = m.connect(Connect::new("a", "s1")).unwrap();
    assert_eq!(again.impair, None, "a new endpoint starts unimpaired");
}

#[test]
fn an_impairment_out_of_range_in_a_state_file_breaks_an_invariant() {
    let mut m = populated();
    let e = m.connect(Connect::new("a", "s1")).unwrap();
    m.endpoints.get_mut(&e.id).unwrap().impair = Some(Impairment { reorder_ppm: 5, ..Impairment::default() });
    let err = m.check_invariants().unwrap_err();
    assert!(err.contains(&e.host_tap_name) && err.contains("reorder needs a delay"), "{err}");
}
