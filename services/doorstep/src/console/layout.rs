//! The page shell every page shares: skip link, header with navigation and sign-out, `<main>`.

use maud::{DOCTYPE, Markup, html};

use super::access::Page;
use super::session::Session;

/// The stylesheet, served from the binary at `/assets/console.css`.
pub const STYLESHEET: &str = include_str!("assets/console.css");
/// A few lines of progressive enhancement (sortable tables), at `/assets/console.js`; every page
/// works without it.
pub const SCRIPT: &str = include_str!("assets/console.js");

/// A whole page: `title` is the `<h1>` and the document title; `current` marks the navigation
/// entry of the page shown.
pub fn page(title: &str, session: Option<&Session>, current: Option<Page>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en-GB" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Doorstep" }
                link rel="stylesheet" href="/assets/console.css";
                script src="/assets/console.js" defer {}
            }
            body {
                a class="skip-link" href="#main" { "Skip to main content" }
                header class="site-header" {
                    div class="brand" { a href="/" { "Doorstep" } }
                    @if let Some(session) = session {
                        nav aria-label="Main" {
                            ul {
                                @for page in Page::ALL.into_iter().filter(|page| page.allows(&session.principal)) {
                                    @let href = nav_href(page, session);
                                    li {
                                        @if current == Some(page) {
                                            a href=(href) aria-current="page" { (page.title()) }
                                        } @else {
                                            a href=(href) { (page.title()) }
                                        }
                                    }
                                }
                            }
                        }
                        div class="who" {
                            span class="subject" title=(session.principal.subject) {
                                (session.display_name) " · "
                                (session.principal.roles.iter().map(|role| role.as_str()).collect::<Vec<_>>().join(", "))
                            }
                            form method="post" action="/sign-out" class="inline" {
                                (csrf_field(session))
                                button type="submit" class="link-button" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" {
                    h1 { (title) }
                    (body)
                }
            }
        }
    }
}

fn nav_href(page: Page, session: &Session) -> &'static str {
    match (page, session.principal.contractor_scope()) {
        (Page::Contractors, Some(_)) => "/contractors/mine",
        _ => page.path(),
    }
}

/// The hidden field every form that changes something carries.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(session.csrf_token); }
}

/// A short message page (errors, "no access").
pub fn message(title: &str, session: Option<&Session>, text: &str) -> Markup {
    page(
        title,
        session,
        None,
        html! {
            p { (text) }
            p { a href="/" { "Back to the start" } }
        },
    )
}
