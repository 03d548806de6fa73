//! AF_XDP backend (being written).
