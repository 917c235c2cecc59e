//! The OTLP request built from a [`Collection`]: one resource, one scope,
//! one metric per catalog entry, counters and histograms cumulative unless
//! the temporality preference makes them delta ([`super::temporality`]).

use std::time::{SystemTime, UNIX_EPOCH};

use opentelemetry_sdk::metrics::Temporality;

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics,
        ScopeMetrics, Sum, metric::Data, number_data_point,
    },
    resource::v1::Resource,
};

use super::temporality::is_delta;
use crate::export::{
    attributes::AttrValue,
    catalog::{self, Instrument},
    series::{Collection, Point, Value},
};

/// The request for `collection`, from the node's `resource`; its points of
/// the metrics `temporality` makes delta must be deltas already.
pub fn request(collection: &Collection, resource: &Resource, temporality: Temporality) -> ExportMetricsServiceRequest {
    let time = unix_nanos(collection.time);
    let metrics = (collection.families.iter())
        .map(|(metric, points)| {
            let temporality = if is_delta(temporality, metric.instrument) {
                AggregationTemporality::Delta
            } else {
                AggregationTemporality::Cumulative
            };
            encode_metric(metric, points, time, temporality as i32)
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

fn encode_metric(metric: &catalog::Metric, points: &[Point], time: u64, temporality: i32) -> Metric {
    let data = match metric.instrument {
        Instrument::Counter => Data::Sum(Sum {
            data_points: points.iter().filter_map(|p| number_point(p, time)).collect(),
            aggregation_temporality: temporality,
            is_monotonic: true,
        }),
        Instrument::Gauge => {
            Data::Gauge(Gauge { data_points: points.iter().filter_map(|p| number_point(p, time)).collect() })
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
