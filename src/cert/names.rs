//! Whether a certificate's names cover a domain, by the wildcard rules of RFC 6125 §6.4.3 as
//! browsers apply them: a wildcard is a whole left-most label and matches exactly one label,
//! so `*.a.com` covers `x.a.com` but neither `a.com` nor `y.x.a.com`. Comparison ignores
//! ASCII case and one trailing dot.

/// Lower-cases a DNS name and drops a trailing root dot.
pub fn normalize(name: &str) -> String {
    name.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Whether the certificate name `pattern` (possibly `*.` wildcard) covers `domain`. A
/// requested wildcard domain is covered only by the same wildcard, never by a plain name.
pub fn name_covers(pattern: &str, domain: &str) -> bool {
    let pattern = normalize(pattern);
    let domain = normalize(domain);
    if pattern.is_empty() || domain.is_empty() {
        return false;
    }
    if pattern == domain {
        return true;
    }
    let Some(suffix) = pattern.strip_prefix("*.") else {
        return false;
    };
    // A wildcard needs a real parent (`*.com` style patterns cover nothing here; CAs refuse
    // them anyway) and a wildcard in any other position is not a wildcard.
    if !suffix.contains('.') || suffix.contains('*') {
        return false;
    }
    match domain.split_once('.') {
        Some((label, rest)) => !label.is_empty() && label != "*" && rest == suffix,
        None => false,
    }
}

/// Whether some name in `cert_names` covers `domain`.
pub fn covers(cert_names: &[String], domain: &str) -> bool {
    cert_names.iter().any(|name| name_covers(name, domain))
}

/// The requested domains that `cert_names` does not cover, in request order.
pub fn uncovered<'a>(cert_names: &[String], domains: &'a [String]) -> Vec<&'a str> {
    domains
        .iter()
        .filter(|d| !covers(cert_names, d))
        .map(String::as_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_covers_exactly_one_label() {
        assert!(name_covers("*.a.com", "x.a.com"));
        assert!(!name_covers("*.a.com", "a.com"));
        assert!(!name_covers("*.a.com", "y.x.a.com"));
        assert!(!name_covers("*.a.com", "x.b.com"));
        assert!(!name_covers("*.a.com", "xa.com"));
        assert!(!name_covers("*.a.com", ".a.com"));
    }

    #[test]
    fn case_and_trailing_dots_do_not_matter() {
        assert!(name_covers("WWW.Example.COM", "www.example.com"));
        assert!(name_covers("www.example.com.", "WWW.EXAMPLE.COM"));
        assert!(name_covers("*.Example.com", "Api.example.com."));
        assert!(name_covers("*.example.com.", "api.EXAMPLE.com"));
    }

    #[test]
    fn exact_names_do_not_match_neighbours() {
        assert!(name_covers("a.com", "a.com"));
        assert!(!name_covers("a.com", "x.a.com"));
        assert!(!name_covers("x.a.com", "a.com"));
        assert!(!name_covers("", "a.com"));
        assert!(!name_covers("a.com", ""));
    }

    #[test]
    fn odd_wildcards_cover_nothing_more_than_themselves() {
        assert!(!name_covers("*.com", "a.com"));
        assert!(!name_covers("*", "a"));
        assert!(!name_covers("x*.a.com", "xy.a.com"));
        assert!(!name_covers("*.*.a.com", "x.y.a.com"));
        // A wildcard request is met by the same wildcard, not by a plain name.
        assert!(name_covers("*.a.com", "*.a.com"));
        assert!(!name_covers("x.a.com", "*.a.com"));
        assert!(!name_covers("*.a.com", "*.x.a.com"));
    }

    #[test]
    fn uncovered_lists_missing_domains_in_order() {
        let names = vec!["a.com".to_owned(), "*.a.com".to_owned()];
        let wanted: Vec<String> = ["a.com", "b.com", "x.a.com", "y.x.a.com"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(uncovered(&names, &wanted), vec!["b.com", "y.x.a.com"]);
        assert!(covers(&names, "Q.A.COM."));
    }
}
