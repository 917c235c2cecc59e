//! Delta temporality, for receivers that ask for it
//! (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`). The series are
//! cumulative; a delta point is a series' value at this export less its
//! value at the last one, starting at the last export. What it keeps is
//! the last value of every series exported, and a series that leaves the
//! collection (its process exited, or was folded) is forgotten with it.
//!
//! Which metrics go delta follows the specification's table:
//! `delta` makes counters and histograms delta; `lowmemory` histograms
//! only. batchwatch's counters are totals observed in the kernel maps
//! (asynchronous counters, which `lowmemory` keeps cumulative), its
//! histograms are recorded call by call by the probes (synchronous).
//! Gauges have no temporality.

use std::{collections::HashMap, time::SystemTime};

use opentelemetry_sdk::metrics::Temporality;

use crate::export::{
    catalog::{Instrument, Metric},
    series::{Collection, Point, Value},
};

/// Whether `instrument`'s points go as deltas under `temporality`.
pub fn is_delta(temporality: Temporality, instrument: Instrument) -> bool {
    matches!(
        (temporality, instrument),
        (Temporality::Delta, Instrument::Counter | Instrument::Histogram { .. })
            | (Temporality::LowMemory, Instrument::Histogram { .. })
    )
}

/// A series: its metric and its attributes, as text.
type SeriesKey = (&'static str, Vec<(&'static str, String)>);

/// The last value exported of every delta series.
pub struct Deltas {
    temporality: Temporality,
    /// Per series, its start and its cumulative value at the last export.
    last: HashMap<SeriesKey, (SystemTime, Value)>,
    /// When the last export was collected.
    last_time: Option<SystemTime>,
}

impl Deltas {
    pub fn new(temporality: Temporality) -> Deltas {
        Deltas { temporality, last: HashMap::new(), last_time: None }
    }

    pub fn temporality(&self) -> Temporality {
        self.temporality
    }

    /// `collection` as it is exported: the points of the delta metrics as
    /// what changed since the last export; the others as they are.
    pub fn apply(&mut self, collection: &Collection) -> Collection {
        let mut previous = std::mem::take(&mut self.last);
        let since = self.last_time.replace(collection.time);
        let families = collection
            .families
            .iter()
            .map(|(metric, points)| {
                let points = if is_delta(self.temporality, metric.instrument) {
                    points.iter().map(|point| self.delta(metric, point, &mut previous, since)).collect()
                } else {
                    points.clone()
                };
                (*metric, points)
            })
            .collect();
        Collection { time: collection.time, families }
    }

    /// `point` less its value at the last export, from then; a series that
    /// is new, or restarted since (another start), goes whole from its start.
    fn delta(
        &mut self,
        metric: &'static Metric,
        point: &Point,
        previous: &mut HashMap<SeriesKey, (SystemTime, Value)>,
        since: Option<SystemTime>,
    ) -> Point {
        let key = (metric.name, point.attributes().map(|(key, value)| (*key, value.to_string())).collect());
        let Some(start) = point.start else { return point.clone() };
        let before = previous.remove(&key);
        self.last.insert(key, (start, point.value.clone()));
        match (before, since) {
            (Some((started, before)), Some(since)) if started == start => {
                Point { start: Some(since), value: minus(&point.value, &before), ..point.clone() }
            }
            _ => point.clone(),
        }
    }
}

/// `now - before`, per bucket for histograms. Series only grow, so nothing
/// goes below zero.
fn minus(now: &Value, before: &Value) -> Value {
    match (now, before) {
        (Value::Int(now), Value::Int(before)) => Value::Int(now.saturating_sub(*before)),
        (Value::Float(now), Value::Float(before)) => Value::Float((now - before).max(0.0)),
        (Value::Histogram { counts, sum }, Value::Histogram { counts: was, sum: was_sum }) => Value::Histogram {
            counts: counts
                .iter()
                .zip(was.iter().chain(std::iter::repeat(&0)))
                .map(|(n, b)| n.saturating_sub(*b))
                .collect(),
            sum: (sum - was_sum).max(0.0),
        },
        // A series keeps its kind of value; should it not, it goes whole.
        (now, _) => now.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, UNIX_EPOCH},
    };

    use super::*;
    use crate::export::{attributes::Attr, catalog};

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)
    }

    /// A collection at `time` of one counter and one histogram of pid 10,
    /// started at `start`.
    fn collection(time: u64, start: u64, calls: u64, counts: [u64; 3]) -> Collection {
        let subject: Arc<[Attr]> = Arc::new([("process.pid", 10.into())]);
        let point = |value| Point { subject: subject.clone(), own: vec![], start: Some(at(start)), value };
        let sizes = Value::Histogram { counts: counts.to_vec(), sum: counts.iter().sum::<u64>() as f64 * 100.0 };
        let gauge = Point { start: None, ..point(Value::Int(7)) };
        Collection {
            time: at(time),
            families: vec![
                (&catalog::WRITE_CALLS, vec![point(Value::Int(calls))]),
                (&catalog::WRITE_BATCH_SIZE, vec![point(sizes)]),
                (&catalog::EXPORT_SERIES, vec![gauge]),
            ],
        }
    }

    fn value<'a>(collection: &'a Collection, metric: &Metric) -> &'a Point {
        &collection.families.iter().find(|(m, _)| m.name == metric.name).unwrap().1[0]
    }

    #[test]
    fn delta_points_sum_to_the_cumulative_ones() {
        let mut deltas = Deltas::new(Temporality::Delta);
        let cumulative =
            [collection(1, 0, 100, [1, 2, 3]), collection(2, 0, 250, [1, 5, 3]), collection(3, 0, 250, [2, 5, 9])];
        let exported: Vec<Collection> = cumulative.iter().map(|c| deltas.apply(c)).collect();
        let calls: Vec<&Value> = exported.iter().map(|c| &value(c, &catalog::WRITE_CALLS).value).collect();
        assert_eq!(calls, [&Value::Int(100), &Value::Int(150), &Value::Int(0)]);
        let starts: Vec<_> = exported.iter().map(|c| value(c, &catalog::WRITE_CALLS).start).collect();
        assert_eq!(starts, [Some(at(0)), Some(at(1)), Some(at(2))], "each delta starts at the last export");
        let mut counts = vec![0; 3];
        let mut sum = 0.0;
        for collection in &exported {
            let Value::Histogram { counts: c, sum: s } = &value(collection, &catalog::WRITE_BATCH_SIZE).value else {
                panic!("a histogram")
            };
            counts.iter_mut().zip(c).for_each(|(total, n)| *total += n);
            sum += s;
        }
        assert_eq!((counts, sum), (vec![2, 5, 9], 1600.0));
        assert_eq!(value(&exported[2], &catalog::EXPORT_SERIES).value, Value::Int(7), "gauges stay as they are");
    }

    #[test]
    fn a_restarted_series_goes_whole_and_lowmemory_keeps_counters_cumulative() {
        let mut deltas = Deltas::new(Temporality::Delta);
        deltas.apply(&collection(1, 0, 100, [0, 0, 1]));
        let restarted = deltas.apply(&collection(2, 1, 30, [0, 0, 1]));
        assert_eq!(value(&restarted, &catalog::WRITE_CALLS).value, Value::Int(30));
        assert_eq!(value(&restarted, &catalog::WRITE_CALLS).start, Some(at(1)));

        let mut low = Deltas::new(Temporality::LowMemory);
        low.apply(&collection(1, 0, 100, [0, 0, 1]));
        let second = low.apply(&collection(2, 0, 250, [0, 0, 4]));
        assert_eq!(value(&second, &catalog::WRITE_CALLS).value, Value::Int(250));
        assert_eq!(
            value(&second, &catalog::WRITE_BATCH_SIZE).value,
            Value::Histogram { counts: vec![0, 0, 3], sum: 300.0 }
        );
    }
}
