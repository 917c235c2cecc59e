//! The OTLP request built from a [`Collection`]: one resource, one scope,
//! one metric per catalog entry, counters and histograms cumulative unless
//! the temporality preference makes them delta ([`super::temporality`]).
//! Histograms go with explicit buckets, or, if `export.histograms` asks,
//! as exponential histograms at scale 0, whose buckets are the kernel's
//! slots (`agent_common::hist`). The metrics in seconds stay explicit: the
//! kernel counts powers of two of nanoseconds, which are no powers of two
//! of seconds.

use std::time::{SystemTime, UNIX_EPOCH};

use agent_common::hist::{slot_lower_bound, slot_upper_bound};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
        HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
        exponential_histogram_data_point::Buckets, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};
use opentelemetry_sdk::metrics::Temporality;

use super::temporality::is_delta;
use crate::{
    config::Histograms,
    export::{
        attributes::AttrValue,
        catalog::{self, Instrument, Scale},
        series::{Collection, Point, Value},
    },
    model::histogram::Log2Histogram,
};

/// The request for `collection`, from the node's `resource`; its points of
/// the metrics `temporality` makes delta must be deltas already.
pub fn request(
    collection: &Collection,
    resource: &Resource,
    temporality: Temporality,
    histograms: Histograms,
) -> ExportMetricsServiceRequest {
    let time = unix_nanos(collection.time);
    let metrics = (collection.families.iter())
        .map(|(metric, points)| {
            let temporality = if is_delta(temporality, metric.instrument) {
                AggregationTemporality::Delta
            } else {
                AggregationTemporality::Cumulative
            };
            encode_metric(metric, points, time, temporality as i32, histograms)
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(resource.clone()),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "batchwatch".to_owned(),
                    version: env!("CARGO_PKG_VERSION").to_owned(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn encode_metric(
    metric: &catalog::Metric,
    points: &[Point],
    time: u64,
    temporality: i32,
    histograms: Histograms,
) -> Metric {
    let data = match metric.instrument {
        Instrument::Counter => Data::Sum(Sum {
            data_points: points.iter().filter_map(|p| number_point(p, time)).collect(),
            aggregation_temporality: temporality,
            is_monotonic: true,
        }),
        Instrument::Gauge => {
            Data::Gauge(Gauge { data_points: points.iter().filter_map(|p| number_point(p, time)).collect() })
        }
        Instrument::Histogram { scale: Scale::Unit, .. } if histograms == Histograms::Exponential => {
            Data::ExponentialHistogram(ExponentialHistogram {
                data_points: points.iter().filter_map(|p| exponential_point(p, time)).collect(),
                aggregation_temporality: temporality,
            })
        }
        Instrument::Histogram { .. } => {
            let bounds = metric.bucket_bounds();
            Data::Histogram(Histogram {
                data_points: points.iter().filter_map(|p| histogram_point(p, &bounds, time)).collect(),
                aggregation_temporality: temporality,
            })
        }
    };
    Metric {
        name: metric.name.to_owned(),
        description: metric.description.to_owned(),
        unit: metric.unit.to_owned(),
        data: Some(data),
        metadata: Vec::new(),
    }
}

/// A counter or gauge point. The series builder gives these metrics
/// numbers only; anything else is left out.
fn number_point(point: &Point, time: u64) -> Option<NumberDataPoint> {
    let value = match point.value {
        Value::Int(n) => number_data_point::Value::AsInt(i64::try_from(n).unwrap_or(i64::MAX)),
        Value::Float(x) => number_data_point::Value::AsDouble(x),
        Value::Histogram { .. } => return None,
    };
    Some(NumberDataPoint {
        attributes: attributes(point),
        start_time_unix_nano: point.start.map_or(0, unix_nanos),
        time_unix_nano: time,
        value: Some(value),
        ..Default::default()
    })
}

fn histogram_point(point: &Point, bounds: &[f64], time: u64) -> Option<HistogramDataPoint> {
    let Value::Histogram { counts, sum } = &point.value else { return None };
    Some(HistogramDataPoint {
        attributes: attributes(point),
        start_time_unix_nano: point.start.map_or(0, unix_nanos),
        time_unix_nano: time,
        count: counts.iter().sum(),
        sum: Some(*sum),
        bucket_counts: counts.clone(),
        // The metric's bounds, the same for every point: one fewer than
        // buckets, the last being open.
        explicit_bounds: bounds.to_vec(),
        ..Default::default()
    })
}

/// A point at scale 0: slot 0 is the zero bucket, slot `k >= 1` the
/// positive bucket `k - 2`, the empty slots below the first and above the
/// last that hold samples left out. As in the explicit form, the last slot
/// also holds every larger value.
fn exponential_point(point: &Point, time: u64) -> Option<ExponentialHistogramDataPoint> {
    let Value::Histogram { counts, sum } = &point.value else { return None };
    let (offset, positive) = Log2Histogram::new(counts).exponential_buckets();
    let only = only_value(counts, *sum);
    Some(ExponentialHistogramDataPoint {
        attributes: attributes(point),
        start_time_unix_nano: point.start.map_or(0, unix_nanos),
        time_unix_nano: time,
        count: counts.iter().sum(),
        sum: Some(*sum),
        scale: 0,
        zero_count: counts[0],
        zero_threshold: 0.0,
        positive: Some(Buckets { offset, bucket_counts: positive.to_vec() }),
        // Known exactly only when every sample had one value.
        min: only,
        max: only,
        ..Default::default()
    })
}

/// The one value every sample had, when the slots and the exact sum prove
/// it: all samples in one slot, averaging its least or its largest value.
/// Anything else leaves the minimum and maximum unknown.
fn only_value(counts: &[u64], sum: f64) -> Option<f64> {
    let mut filled = counts.iter().enumerate().filter(|&(_, &n)| n > 0);
    let (slot, &n) = filled.next()?;
    if filled.next().is_some() {
        return None;
    }
    // The last slot has a least value but no largest.
    let upper = (slot < counts.len() - 1).then(|| slot_upper_bound(slot));
    [Some(slot_lower_bound(slot)), upper].into_iter().flatten().map(|v| v as f64).find(|&v| v * n as f64 == sum)
}

fn attributes(point: &Point) -> Vec<KeyValue> {
    point
        .attributes()
        .map(|(key, value)| {
            let value = match value {
                AttrValue::Str(s) => any_value::Value::StringValue(s.clone()),
                AttrValue::Int(i) => any_value::Value::IntValue(*i),
                AttrValue::Bool(b) => any_value::Value::BoolValue(*b),
            };
            KeyValue { key: (*key).to_owned(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
        })
        .collect()
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, UNIX_EPOCH},
    };

    use agent_common::{hist::log2_slot, write::BYTES_SLOTS};

    use super::*;
    use crate::export::attributes::Attr;

    /// A request of one batch-size point and one wait point holding `values`.
    fn encoded(values: &[u64], histograms: Histograms) -> ExportMetricsServiceRequest {
        let subject: Arc<[Attr]> = Arc::new([("process.pid", 10.into())]);
        let mut counts = vec![0; BYTES_SLOTS];
        values.iter().for_each(|&v| counts[log2_slot(v, BYTES_SLOTS)] += 1);
        let sum = values.iter().sum::<u64>() as f64;
        let point = |counts: Vec<u64>, sum| Point {
            subject: subject.clone(),
            own: vec![],
            start: Some(UNIX_EPOCH + Duration::from_secs(1)),
            value: Value::Histogram { counts, sum },
        };
        let mut waits = vec![0; agent_common::write::GAP_SLOTS];
        waits[3] = 1;
        let collection = Collection {
            time: UNIX_EPOCH + Duration::from_secs(2),
            families: vec![
                (&catalog::WRITE_BATCH_SIZE, vec![point(counts, sum)]),
                (&catalog::WRITE_BATCH_WAIT, vec![point(waits, 3e-9)]),
            ],
        };
        request(&collection, &Resource::default(), Temporality::Cumulative, histograms)
    }

    fn data(request: &ExportMetricsServiceRequest, index: usize) -> &Data {
        request.resource_metrics[0].scope_metrics[0].metrics[index].data.as_ref().unwrap()
    }

    #[test]
    fn exponential_buckets_are_the_kernel_slots_at_scale_0() {
        // 0 → zero bucket; 1 → (1/2, 1], index -1; 2 → (1, 2], index 0;
        // 3 and 4 → (2, 4], index 1; 4097 → (4096, 8192], index 12.
        let request = encoded(&[0, 1, 2, 3, 4, 4097], Histograms::Exponential);
        let Data::ExponentialHistogram(h) = data(&request, 0) else { panic!("{:?}", data(&request, 0)) };
        let point = &h.data_points[0];
        assert_eq!((point.scale, point.zero_count, point.count, point.sum), (0, 1, 6, Some(4107.0)));
        let positive = point.positive.as_ref().unwrap();
        let mut expected = vec![0; 14];
        (expected[0], expected[1], expected[2], expected[13]) = (1, 1, 2, 1);
        assert_eq!((positive.offset, &positive.bucket_counts), (-1, &expected));
        assert_eq!((point.min, point.max), (None, None), "unknown across slots");
        // The wait, in seconds, stays explicit.
        assert!(matches!(data(&request, 1), Data::Histogram(_)), "{:?}", data(&request, 1));
    }

    #[test]
    fn min_and_max_only_when_the_sum_proves_one_value() {
        let exponential = |values: &[u64]| {
            let request = encoded(values, Histograms::Exponential);
            let Data::ExponentialHistogram(h) = data(&request, 0) else { panic!() };
            h.data_points[0].clone()
        };
        let full = exponential(&[4096; 10]);
        assert_eq!((full.min, full.max), (Some(4096.0), Some(4096.0)));
        assert_eq!(full.positive.unwrap(), Buckets { offset: 11, bucket_counts: vec![10] });
        let least = exponential(&[2049; 3]);
        assert_eq!((least.min, least.max), (Some(2049.0), Some(2049.0)));
        let mixed = exponential(&[3000, 4000]);
        assert_eq!((mixed.min, mixed.max), (None, None));
        let empty = exponential(&[]);
        assert_eq!((empty.count, empty.positive.unwrap(), empty.min), (0, Buckets::default(), None));
    }

    #[test]
    fn explicit_is_the_default_with_every_bound() {
        let request = encoded(&[512], Histograms::Explicit);
        let Data::Histogram(h) = data(&request, 0) else { panic!() };
        assert_eq!(h.data_points[0].explicit_bounds, catalog::WRITE_BATCH_SIZE.bucket_bounds());
        assert_eq!(h.data_points[0].bucket_counts[10], 1, "512 in (256, 512]");
    }
}
