//! Tests of stack planning and export.
