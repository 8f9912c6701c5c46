//! A table of figures, rendered both as HTML and as CSV from the same rows, so the download is
//! the table by construction. Each cell keeps its full-precision value (`data-value`, and the
//! CSV) beside the rounded text people read.

use maud::{Markup, html};

/// One column: its key (`data-column`) and heading.
pub struct Column {
    pub key: &'static str,
    pub heading: &'static str,
    pub numeric: bool,
}

/// One cell: its raw value (empty when undefined) and what is shown, optionally as a link.
pub struct Cell {
    pub value: String,
    pub display: String,
    pub link: Option<String>,
}

impl Cell {
    pub fn text(value: impl Into<String>) -> Self {
        let value = value.into();
        Self {
            display: value.clone(),
            value,
            link: None,
        }
    }

    pub fn count(value: u64) -> Self {
        Self::text(value.to_string())
    }

    /// A number shown to `decimals` places; `None` is shown as a dash and has no value.
    pub fn number(value: Option<f64>, decimals: usize) -> Self {
        match value {
            Some(value) => Self {
                value: value.to_string(),
                display: format!("{value:.decimals$}"),
                link: None,
            },
            None => Self {
                value: String::new(),
                display: "—".to_owned(),
                link: None,
            },
        }
    }

    /// A proportion (0 to 1) shown as a percentage.
    pub fn share(value: Option<f64>) -> Self {
        match value {
            Some(value) => Self {
                value: value.to_string(),
                display: format!("{:.1}%", value * 100.0),
                link: None,
            },
            None => Self::number(None, 0),
        }
    }

    pub fn shown_as(mut self, display: impl Into<String>) -> Self {
        self.display = display.into();
        self
    }

    pub fn linked(mut self, href: impl Into<String>) -> Self {
        self.link = Some(href.into());
        self
    }
}

/// A row: its id attribute (`data-contractor-id` and the like) and cells.
pub struct Row {
    pub id: Option<(&'static str, String)>,
    pub cells: Vec<Cell>,
}

pub struct Table {
    pub id: &'static str,
    pub caption: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
    pub sortable: bool,
}

impl Table {
    pub fn html(&self) -> Markup {
        self.render(false)
    }

    /// As [`Table::html`], with rows that stack into cards on narrow screens, each cell under
    /// its heading.
    pub fn stacked_html(&self) -> Markup {
        self.render(true)
    }

    fn render(&self, stacked: bool) -> Markup {
        html! {
            div class="table-wrap" tabindex="0" role="region" aria-label=(self.caption) {
                table id=(self.id) data-sortable[self.sortable] class=[stacked.then_some("stacked")] {
                    caption { (self.caption) }
                    thead {
                        tr {
                            @for column in &self.columns {
                                th scope="col" data-column=(column.key) class=[column.numeric.then_some("number")] { (column.heading) }
                            }
                        }
                    }
                    tbody {
                        @for row in &self.rows {
                            @let (id_name, id_value) = row.id.clone().unzip();
                            tr data-contractor-id=[id_value.as_ref().filter(|_| id_name == Some("data-contractor-id"))]
                               data-complaint-id=[id_value.as_ref().filter(|_| id_name == Some("data-complaint-id"))] {
                                @for (index, (column, cell)) in self.columns.iter().zip(&row.cells).enumerate() {
                                    @if index == 0 {
                                        th scope="row" data-column=(column.key) data-value=(cell.value) { (linked(cell)) }
                                    } @else {
                                        td data-column=(column.key) data-value=(cell.value) data-label=(column.heading) class=[column.numeric.then_some("number")] { (linked(cell)) }
                                    }
                                }
                            }
                        }
                        @if self.rows.is_empty() {
                            tr { td colspan=(self.columns.len()) { "Nothing to show for this period." } }
                        }
                    }
                }
            }
        }
    }

    /// The table as CSV: the headings, then each row's raw values.
    pub fn csv(&self) -> Result<String, csv::Error> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(self.columns.iter().map(|column| column.heading))?;
        for row in &self.rows {
            writer.write_record(row.cells.iter().map(|cell| cell.value.as_str()))?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|error| csv::Error::from(error.into_error()))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

fn linked(cell: &Cell) -> Markup {
    html! {
        @match &cell.link {
            Some(href) => a href=(href) { (cell.display) },
            None => (cell.display),
        }
    }
}
