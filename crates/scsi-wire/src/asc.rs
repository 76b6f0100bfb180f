//! The one table of additional sense codes (SPC-4 4.5.6, table 28): every ASC/ASCQ
//! pair the target reports is named here, once, with its SPC-4 description. Sense
//! data elsewhere is built from these names (`Sense::named(key, asc::X)`), never from
//! bare numbers; a test in this crate scans the workspace for any that slip through.

use std::fmt;

/// An additional sense code and its qualifier (ASC/ASCQ).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Asc {
    pub code: u8,
    pub qualifier: u8,
}

impl Asc {
    /// The SPC-4 description, for the codes in this table.
    pub fn description(self) -> Option<&'static str> {
        describe(self)
    }
}

impl fmt::Debug for Asc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Asc({:02X}h/{:02X}h", self.code, self.qualifier)?;
        if let Some(d) = self.description() {
            write!(f, " {d}")?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for Asc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.description() {
            Some(d) => f.write_str(d),
            None => write!(f, "ASC {:02X}h ASCQ {:02X}h", self.code, self.qualifier),
        }
    }
}

/// Declares the named codes and the description lookup in one list, so a name and its
/// description cannot drift apart. A pair listed twice is an unreachable match arm,
/// which the workspace's `-D warnings` turns into a build failure.
macro_rules! asc_table {
    ($($name:ident($code:literal, $qualifier:literal) $text:literal;)*) => {
        $(
            #[doc = $text]
            pub const $name: Asc = Asc { code: $code, qualifier: $qualifier };
        )*

        fn describe(a: Asc) -> Option<&'static str> {
            match (a.code, a.qualifier) {
                $(($code, $qualifier) => Some($text),)*
                _ => None,
            }
        }

        /// Every named code, in table order (for tests and diagnostics).
        pub const ALL: &[(&str, Asc)] = &[$((stringify!($name), $name),)*];
    };
}

asc_table! {
    NO_ADDITIONAL_SENSE_INFORMATION(0x00, 0x00) "NO ADDITIONAL SENSE INFORMATION";
    OPERATION_IN_PROGRESS(0x00, 0x16) "OPERATION IN PROGRESS";
    PERIPHERAL_DEVICE_WRITE_FAULT(0x03, 0x00) "PERIPHERAL DEVICE WRITE FAULT";
    LOGICAL_UNIT_NOT_READY_FORMAT_IN_PROGRESS(0x04, 0x04)
        "LOGICAL UNIT NOT READY, FORMAT IN PROGRESS";
    LOGICAL_UNIT_NOT_ACCESSIBLE_TRANSITIONING(0x04, 0x0A)
        "LOGICAL UNIT NOT ACCESSIBLE, ASYMMETRIC ACCESS STATE TRANSITION";
    LOGICAL_UNIT_NOT_ACCESSIBLE_STANDBY(0x04, 0x0B)
        "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN STANDBY STATE";
    LOGICAL_UNIT_NOT_ACCESSIBLE_UNAVAILABLE(0x04, 0x0C)
        "LOGICAL UNIT NOT ACCESSIBLE, TARGET PORT IN UNAVAILABLE STATE";
    LOGICAL_UNIT_NOT_READY_SANITIZE_IN_PROGRESS(0x04, 0x1B)
        "LOGICAL UNIT NOT READY, SANITIZE IN PROGRESS";
    THIRD_PARTY_DEVICE_FAILURE(0x0D, 0x01) "THIRD PARTY DEVICE FAILURE";
    COPY_TARGET_DEVICE_NOT_REACHABLE(0x0D, 0x02) "COPY TARGET DEVICE NOT REACHABLE";
    UNRECOVERED_READ_ERROR(0x11, 0x00) "UNRECOVERED READ ERROR";
    PARAMETER_LIST_LENGTH_ERROR(0x1A, 0x00) "PARAMETER LIST LENGTH ERROR";
    MISCOMPARE_DURING_VERIFY_OPERATION(0x1D, 0x00) "MISCOMPARE DURING VERIFY OPERATION";
    INVALID_COMMAND_OPERATION_CODE(0x20, 0x00) "INVALID COMMAND OPERATION CODE";
    LOGICAL_BLOCK_ADDRESS_OUT_OF_RANGE(0x21, 0x00) "LOGICAL BLOCK ADDRESS OUT OF RANGE";
    INVALID_FIELD_IN_CDB(0x24, 0x00) "INVALID FIELD IN CDB";
    LOGICAL_UNIT_NOT_SUPPORTED(0x25, 0x00) "LOGICAL UNIT NOT SUPPORTED";
    INVALID_FIELD_IN_PARAMETER_LIST(0x26, 0x00) "INVALID FIELD IN PARAMETER LIST";
    PARAMETER_VALUE_INVALID(0x26, 0x02) "PARAMETER VALUE INVALID";
    INVALID_RELEASE_OF_PERSISTENT_RESERVATION(0x26, 0x04)
        "INVALID RELEASE OF PERSISTENT RESERVATION";
    TOO_MANY_TARGET_DESCRIPTORS(0x26, 0x06) "TOO MANY TARGET DESCRIPTORS";
    UNSUPPORTED_TARGET_DESCRIPTOR_TYPE_CODE(0x26, 0x07)
        "UNSUPPORTED TARGET DESCRIPTOR TYPE CODE";
    TOO_MANY_SEGMENT_DESCRIPTORS(0x26, 0x08) "TOO MANY SEGMENT DESCRIPTORS";
    UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE_CODE(0x26, 0x09)
        "UNSUPPORTED SEGMENT DESCRIPTOR TYPE CODE";
    INLINE_DATA_LENGTH_EXCEEDED(0x26, 0x0B) "INLINE DATA LENGTH EXCEEDED";
    WRITE_PROTECTED(0x27, 0x00) "WRITE PROTECTED";
    LOGICAL_UNIT_SOFTWARE_WRITE_PROTECTED(0x27, 0x02) "LOGICAL UNIT SOFTWARE WRITE PROTECTED";
    SPACE_ALLOCATION_FAILED_WRITE_PROTECT(0x27, 0x07) "SPACE ALLOCATION FAILED WRITE PROTECT";
    NOT_READY_TO_READY_CHANGE_MEDIUM_MAY_HAVE_CHANGED(0x28, 0x00)
        "NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED";
    POWER_ON_RESET_OR_BUS_DEVICE_RESET(0x29, 0x00)
        "POWER ON, RESET, OR BUS DEVICE RESET OCCURRED";
    SCSI_BUS_RESET_OCCURRED(0x29, 0x02) "SCSI BUS RESET OCCURRED";
    BUS_DEVICE_RESET_FUNCTION_OCCURRED(0x29, 0x03) "BUS DEVICE RESET FUNCTION OCCURRED";
    I_T_NEXUS_LOSS_OCCURRED(0x29, 0x07) "I_T NEXUS LOSS OCCURRED";
    MODE_PARAMETERS_CHANGED(0x2A, 0x01) "MODE PARAMETERS CHANGED";
    RESERVATIONS_PREEMPTED(0x2A, 0x03) "RESERVATIONS PREEMPTED";
    RESERVATIONS_RELEASED(0x2A, 0x04) "RESERVATIONS RELEASED";
    REGISTRATIONS_PREEMPTED(0x2A, 0x05) "REGISTRATIONS PREEMPTED";
    ASYMMETRIC_ACCESS_STATE_CHANGED(0x2A, 0x06) "ASYMMETRIC ACCESS STATE CHANGED";
    CAPACITY_DATA_HAS_CHANGED(0x2A, 0x09) "CAPACITY DATA HAS CHANGED";
    COMMANDS_CLEARED_BY_ANOTHER_INITIATOR(0x2F, 0x00) "COMMANDS CLEARED BY ANOTHER INITIATOR";
    FORMAT_COMMAND_FAILED(0x31, 0x01) "FORMAT COMMAND FAILED";
    SANITIZE_COMMAND_FAILED(0x31, 0x03) "SANITIZE COMMAND FAILED";
    SAVING_PARAMETERS_NOT_SUPPORTED(0x39, 0x00) "SAVING PARAMETERS NOT SUPPORTED";
    MEDIUM_NOT_PRESENT(0x3A, 0x00) "MEDIUM NOT PRESENT";
    INQUIRY_DATA_HAS_CHANGED(0x3F, 0x03) "INQUIRY DATA HAS CHANGED";
    REPORTED_LUNS_DATA_HAS_CHANGED(0x3F, 0x0E) "REPORTED LUNS DATA HAS CHANGED";
    INTERNAL_TARGET_FAILURE(0x44, 0x00) "INTERNAL TARGET FAILURE";
    PROTOCOL_SERVICE_CRC_ERROR(0x47, 0x05) "PROTOCOL SERVICE CRC ERROR";
    INVALID_MESSAGE_ERROR(0x49, 0x00) "INVALID MESSAGE ERROR";
    DATA_PHASE_ERROR(0x4B, 0x00) "DATA PHASE ERROR";
    OVERLAPPED_COMMANDS_ATTEMPTED(0x4E, 0x00) "OVERLAPPED COMMANDS ATTEMPTED";
    MEDIUM_REMOVAL_PREVENTED(0x53, 0x02) "MEDIUM REMOVAL PREVENTED";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_sorted_by_code() {
        for w in ALL.windows(2) {
            let (a, b) = (w[0].1, w[1].1);
            assert!(
                (a.code, a.qualifier) < (b.code, b.qualifier),
                "{} and {} are out of order or the same code",
                w[0].0,
                w[1].0
            );
        }
    }

    #[test]
    fn every_name_describes_itself() {
        for (name, a) in ALL {
            let text = a.description().unwrap();
            // The constant is the description's words, shortened at most.
            let first = text.split([' ', ',']).next().unwrap();
            assert!(name.starts_with(first), "{name} vs {text}");
        }
        assert_eq!(
            INVALID_FIELD_IN_CDB.to_string(),
            "INVALID FIELD IN CDB".to_string()
        );
        let unknown = Asc {
            code: 0x80,
            qualifier: 0x01,
        };
        assert_eq!(unknown.to_string(), "ASC 80h ASCQ 01h");
        assert_eq!(unknown.description(), None);
    }
}
