//! A sans-IO codec for AJP/1.3.
