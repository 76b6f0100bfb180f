use super::*;

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn answer(n: &mut Negotiator, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    n.process(&kv(pairs)).unwrap()
}

fn get<'a>(r: &'a [(String, String)], k: &str) -> Option<&'a str> {
    crate::text::find(r, k)
}

#[test]
fn open_iscsi_style_normal_login() {
    let mut n = Negotiator::new(LocalParams::default(), false);
    let r = answer(
        &mut n,
        &[
            ("InitiatorName", "iqn.x"),
            ("SessionType", "Normal"),
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("ErrorRecoveryLevel", "0"),
            ("InitialR2T", "No"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "16776192"),
            ("FirstBurstLength", "262144"),
            ("MaxOutstandingR2T", "1"),
            ("MaxConnections", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("MaxRecvDataSegmentLength", "262144"),
        ],
    );
    assert!(
        get(&r, "InitiatorName").is_none(),
        "login keys are not answered"
    );
    assert_eq!(get(&r, "HeaderDigest"), Some("None"));
    assert_eq!(get(&r, "DefaultTime2Wait"), Some("2"));
    assert_eq!(get(&r, "DefaultTime2Retain"), Some("0"));
    assert_eq!(get(&r, "IFMarker"), Some("No"));
    assert_eq!(get(&r, "InitialR2T"), Some("No"));
    assert_eq!(get(&r, "ImmediateData"), Some("Yes"));
    assert_eq!(get(&r, "MaxBurstLength"), Some("1048576"));
    assert_eq!(get(&r, "FirstBurstLength"), Some("65536"));
    assert_eq!(get(&r, "MaxOutstandingR2T"), Some("1"));
    assert_eq!(get(&r, "DataPDUInOrder"), Some("Yes"));
    // The initiator's declaration is answered with the target's own.
    assert_eq!(get(&r, "MaxRecvDataSegmentLength"), Some("1048576"));
    assert!(n.target_declarations().is_empty());
    assert!(!n.awaiting_replies());
    let p = n.params();
    assert!(!p.initial_r2t && p.immediate_data);
    assert_eq!(p.max_burst_length, 1 << 20);
    assert_eq!(p.first_burst_length, 65536);
    assert_eq!(p.max_xmit_data_segment_length, 262144);
    assert_eq!(p.max_recv_data_segment_length, 1 << 20);
    assert_eq!(p.default_time2wait, 2);
    assert_eq!(p.max_outstanding_r2t, 1);
}

#[test]
fn boolean_rules() {
    let mut n = Negotiator::new(LocalParams::default(), false);
    let r = answer(
        &mut n,
        &[
            ("InitialR2T", "Yes"),
            ("ImmediateData", "No"),
            ("DataPDUInOrder", "No"),
            ("DataSequenceInOrder", "Maybe"),
        ],
    );
    assert_eq!(get(&r, "InitialR2T"), Some("Yes"));
    assert_eq!(get(&r, "ImmediateData"), Some("No"));
    assert_eq!(get(&r, "DataPDUInOrder"), Some("No"));
    assert_eq!(get(&r, "DataSequenceInOrder"), Some("Reject"));
    let p = n.params();
    assert!(p.initial_r2t && !p.immediate_data && !p.data_pdu_in_order);
    assert!(
        p.data_sequence_in_order,
        "rejected key keeps the RFC default"
    );
    // A target configured with ImmediateData=No answers No to Yes.
    let mut n = Negotiator::new(
        LocalParams {
            immediate_data: false,
            initial_r2t: true,
            ..Default::default()
        },
        false,
    );
    let r = answer(&mut n, &[("ImmediateData", "Yes"), ("InitialR2T", "No")]);
    assert_eq!(get(&r, "ImmediateData"), Some("No"));
    assert_eq!(get(&r, "InitialR2T"), Some("Yes"));
}

#[test]
fn numeric_rules_and_ranges() {
    let mut n = Negotiator::new(LocalParams::default(), false);
    let r = answer(
        &mut n,
        &[
            ("MaxBurstLength", "511"),
            ("FirstBurstLength", "0x1000"),
            ("MaxOutstandingR2T", "100"),
            ("ErrorRecoveryLevel", "2"),
            ("MaxConnections", "8"),
            ("DefaultTime2Wait", "3601"),
            ("DefaultTime2Retain", "abc"),
        ],
    );
    assert_eq!(get(&r, "MaxBurstLength"), Some("Reject"));
    assert_eq!(get(&r, "FirstBurstLength"), Some("4096"));
    assert_eq!(get(&r, "MaxOutstandingR2T"), Some("32"));
    assert_eq!(get(&r, "ErrorRecoveryLevel"), Some("0"));
    assert_eq!(get(&r, "MaxConnections"), Some("1"));
    assert_eq!(get(&r, "DefaultTime2Wait"), Some("Reject"));
    assert_eq!(get(&r, "DefaultTime2Retain"), Some("Reject"));
    let p = n.params();
    assert_eq!(p.first_burst_length, 4096);
    assert_eq!(p.max_outstanding_r2t, 32);
    assert_eq!(p.max_burst_length, 262144, "RFC default after Reject");
}

#[test]
fn digest_selection() {
    let local = LocalParams {
        header_digest: DigestPolicy::Crc32cOrNone,
        data_digest: DigestPolicy::None,
        ..Default::default()
    };
    let mut n = Negotiator::new(local.clone(), false);
    let r = answer(
        &mut n,
        &[
            ("HeaderDigest", "CRC32C,None"),
            ("DataDigest", "CRC32C,None"),
        ],
    );
    assert_eq!(get(&r, "HeaderDigest"), Some("CRC32C"));
    assert_eq!(get(&r, "DataDigest"), Some("None"));
    assert_eq!(n.params().header_digest, Digest::Crc32c);
    assert_eq!(n.params().data_digest, Digest::None);

    // Initiator order wins.
    let mut n = Negotiator::new(local.clone(), false);
    let r = answer(&mut n, &[("HeaderDigest", "None,CRC32C")]);
    assert_eq!(get(&r, "HeaderDigest"), Some("None"));

    // No common value.
    let mut n = Negotiator::new(local, false);
    let r = answer(&mut n, &[("DataDigest", "CRC32C")]);
    assert_eq!(get(&r, "DataDigest"), Some("Reject"));
    let r = answer(&mut n, &[("HeaderDigest", "MD5,CRC32C")]);
    assert_eq!(get(&r, "HeaderDigest"), Some("CRC32C"));
}

#[test]
fn discovery_session() {
    let local = LocalParams {
        header_digest: DigestPolicy::Crc32c,
        ..Default::default()
    };
    let mut n = Negotiator::new(local, true);
    let r = answer(
        &mut n,
        &[
            ("SessionType", "Discovery"),
            ("HeaderDigest", "CRC32C,None"),
            ("DataDigest", "None"),
            ("MaxRecvDataSegmentLength", "32768"),
            ("InitialR2T", "Yes"),
            ("MaxBurstLength", "262144"),
            ("ErrorRecoveryLevel", "0"),
        ],
    );
    assert_eq!(get(&r, "HeaderDigest"), Some("None"));
    assert_eq!(get(&r, "DataDigest"), Some("None"));
    assert_eq!(get(&r, "InitialR2T"), Some("Irrelevant"));
    assert_eq!(get(&r, "MaxBurstLength"), Some("Irrelevant"));
    assert_eq!(get(&r, "ErrorRecoveryLevel"), Some("0"));
    assert_eq!(get(&r, "MaxRecvDataSegmentLength"), Some("1048576"));
    // No digest offer on discovery even though the target requires CRC32C.
    assert!(n.target_declarations().is_empty());
    let p = n.params();
    assert_eq!(p.header_digest, Digest::None);
    assert_eq!(p.max_xmit_data_segment_length, 32768);
}

#[test]
fn unknown_obsolete_and_iser_keys() {
    let mut n = Negotiator::new(LocalParams::default(), false);
    let r = answer(
        &mut n,
        &[
            ("X-com.vendor.Foo", "1"),
            ("MaxXmitDataSegmentLength", "8192"),
            ("OFMarkInt", "2048~8192"),
            ("OFMarker", "Yes"),
            ("RDMAExtensions", "Yes"),
            ("MaxAHSLength", "256"),
            ("TargetAlias", "x"),
            ("CHAP_A", "5"),
        ],
    );
    assert_eq!(
        r,
        kv(&[
            ("X-com.vendor.Foo", "NotUnderstood"),
            ("MaxXmitDataSegmentLength", "NotUnderstood"),
            ("OFMarkInt", "Reject"),
            ("OFMarker", "No"),
            ("RDMAExtensions", "No"),
            ("MaxAHSLength", "Irrelevant"),
        ])
    );
}

#[test]
fn duplicates_are_errors_across_pdus() {
    let mut n = Negotiator::new(LocalParams::default(), false);
    answer(&mut n, &[("MaxBurstLength", "65536")]);
    assert_eq!(
        n.process(&kv(&[("MaxBurstLength", "65536")])),
        Err(NegotiationError::Duplicate("MaxBurstLength".into()))
    );
    // Login keys may repeat (the login state machine judges them).
    let mut n = Negotiator::new(LocalParams::default(), false);
    answer(&mut n, &[("InitiatorName", "a")]);
    answer(&mut n, &[("InitiatorName", "a")]);
}

#[test]
fn never_declared_mrdsl_defaults_to_8192() {
    let mut n = Negotiator::new(LocalParams::default(), false);
    answer(&mut n, &[("InitialR2T", "No")]);
    let d = n.target_declarations();
    assert_eq!(d, kv(&[("MaxRecvDataSegmentLength", "1048576")]));
    assert!(n.target_declarations().is_empty(), "declared once");
    assert_eq!(n.params().max_xmit_data_segment_length, 8192);
    // A smaller local cap wins over the initiator's declaration.
    let mut n = Negotiator::new(
        LocalParams {
            max_xmit_data_segment_length: 4096,
            ..Default::default()
        },
        false,
    );
    answer(&mut n, &[("MaxRecvDataSegmentLength", "65536")]);
    assert_eq!(n.params().max_xmit_data_segment_length, 4096);
    // Out of range declaration.
    let mut n = Negotiator::new(LocalParams::default(), false);
    let r = answer(&mut n, &[("MaxRecvDataSegmentLength", "100")]);
    assert_eq!(get(&r, "MaxRecvDataSegmentLength"), Some("Reject"));
    assert_eq!(n.params().max_xmit_data_segment_length, 8192);
}

#[test]
fn target_offers_and_replies() {
    let local = LocalParams {
        max_burst_length: 65536,
        first_burst_length: 16384,
        immediate_data: false,
        data_digest: DigestPolicy::Crc32c,
        ..Default::default()
    };
    let mut n = Negotiator::new(local.clone(), false);
    // The initiator negotiated nothing operational.
    answer(&mut n, &[("InitiatorName", "iqn.x")]);
    let d = n.target_declarations();
    assert_eq!(
        d,
        kv(&[
            ("MaxRecvDataSegmentLength", "1048576"),
            ("ImmediateData", "No"),
            ("MaxBurstLength", "65536"),
            ("FirstBurstLength", "16384"),
            ("DataDigest", "CRC32C"),
        ])
    );
    assert!(n.awaiting_replies());
    let r = answer(
        &mut n,
        &[
            ("ImmediateData", "No"),
            ("MaxBurstLength", "32768"),
            ("FirstBurstLength", "16384"),
            ("DataDigest", "CRC32C"),
        ],
    );
    assert!(r.is_empty(), "replies are not answered");
    assert!(!n.awaiting_replies());
    let p = n.params();
    assert_eq!(p.max_burst_length, 32768);
    assert_eq!(p.first_burst_length, 16384);
    assert!(!p.immediate_data);
    assert_eq!(p.data_digest, Digest::Crc32c);

    // Inadmissible replies fail the login.
    let mut n = Negotiator::new(local.clone(), false);
    n.target_declarations();
    assert!(matches!(
        n.process(&kv(&[("MaxBurstLength", "131072")])),
        Err(NegotiationError::BadReply { .. })
    ));
    let mut n = Negotiator::new(local.clone(), false);
    n.target_declarations();
    assert!(n.process(&kv(&[("ImmediateData", "Yes")])).is_err());
    let mut n = Negotiator::new(local, false);
    n.target_declarations();
    assert!(n.process(&kv(&[("DataDigest", "None")])).is_err());
}

#[test]
fn no_offer_for_keys_the_initiator_negotiated() {
    let local = LocalParams {
        max_burst_length: 65536,
        ..Default::default()
    };
    let mut n = Negotiator::new(local, false);
    answer(&mut n, &[("MaxBurstLength", "262144")]);
    assert_eq!(n.params().max_burst_length, 65536);
    let d = n.target_declarations();
    assert_eq!(d, kv(&[("MaxRecvDataSegmentLength", "1048576")]));
}

#[test]
fn first_burst_clamped_to_max_burst() {
    let mut n = Negotiator::new(LocalParams::default(), false);
    answer(
        &mut n,
        &[("MaxBurstLength", "4096"), ("FirstBurstLength", "65536")],
    );
    assert_eq!(n.params().first_burst_length, 4096);
}

#[test]
fn policies_and_parsers() {
    for s in ["None", "CRC32C", "CRC32C,None", "None,CRC32C"] {
        assert_eq!(DigestPolicy::parse(s).unwrap().as_str(), s);
    }
    assert_eq!(DigestPolicy::parse("CRC32C,CRC32C"), None);
    assert_eq!(DigestPolicy::parse("crc32c"), None);
    assert_eq!(DigestPolicy::parse(""), None);
    assert_eq!(parse_number("0x10"), Some(16));
    assert_eq!(parse_number("12"), Some(12));
    assert_eq!(parse_number("-1"), None);
    assert_eq!(parse_number("0x"), None);
    assert_eq!(parse_number("99999999999999999999999"), None);
    assert!(is_login_key("CHAP_R") && is_login_key("TargetName"));
    assert!(!is_login_key("MaxBurstLength"));
    let p = SessionParams::rfc_defaults(&LocalParams::default());
    assert_eq!(p.to_pairs().len(), 15);
}
