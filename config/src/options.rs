//! Standard DHCPv4/DHCPv6 option definitions and Kea `option-data` encoding.
