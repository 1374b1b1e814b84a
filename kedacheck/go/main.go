// Command kedacheck runs KEDA's own kafka scaler on a ScaledObject, against a real Kafka, and
// applies to its metrics the arithmetic of the HorizontalPodAutoscaler that KEDA creates.
//
// The scaler is KEDA's code, unchanged: github.com/kedacore/keda/v2/pkg/scalers at the version
// this module is built with. Each trigger gets a scalersconfig.ScalerConfig filled the way
// KEDA's operator fills it (pkg/scaling/scalers_builder.go: the object's name, namespace and
// kind, the trigger's metadata, index and metric type, the operator's default 3 s HTTP
// timeout), then scalers.NewKafkaScaler, GetMetricSpecForScaling and GetMetricsAndActivity.
// One scaler per trigger lives for the whole run and is polled on request, as KEDA keeps it
// between polling intervals (excludePersistentLag depends on that).
//
// What KEDA leaves to Kubernetes is written out here (decide, hpaReplicas), after
// kube-controller-manager's replica calculator: the HPA's replica count for an AverageValue
// external metric, its tolerance, min/max replicas; and KEDA's own activation and
// scale-to-zero steps (pkg/scaling/executor/scale_scaledobjects.go). minReplicaCount and
// maxReplicaCount come from KEDA's own ScaledObject methods.
//
// Protocol, JSON lines:
//
//	stdin  1st line  {"scaledObject": {...}, "verbose": false}
//	stdout 1st line  {"ready": {...}}  what KEDA built: metric names, targets, HPA bounds
//	stdin  next      {"currentReplicas": 2}  (or null: the target before the tolerance)
//	stdout next      {"poll": {...}}  per trigger metric and activity, and the replica count
//	stdin  EOF       scalers are closed, exit 0
//
// Any failure before the first poll prints {"error": "..."} and exits 1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	v2 "k8s.io/api/autoscaling/v2"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	kedav1alpha1 "github.com/kedacore/keda/v2/apis/keda/v1alpha1"
	"github.com/kedacore/keda/v2/pkg/scalers"
	"github.com/kedacore/keda/v2/pkg/scalers/scalersconfig"
)

const (
	kedaModule = "github.com/kedacore/keda/v2"
	// KEDA_HTTP_DEFAULT_TIMEOUT's default in cmd/operator/main.go.
	globalHTTPTimeout = 3000 * time.Millisecond
	// kube-controller-manager's --horizontal-pod-autoscaler-tolerance default; a ScaledObject's
	// behavior.scaleUp/scaleDown.tolerance overrides it (HPAConfigurableTolerance).
	defaultTolerance = 0.1
)

type request struct {
	ScaledObject json.RawMessage `json:"scaledObject"`
	Verbose      bool            `json:"verbose"`
}

type pollRequest struct {
	CurrentReplicas *int32 `json:"currentReplicas"`
}

type triggerSpec struct {
	Index       int    `json:"index"`
	Type        string `json:"type"`
	Name        string `json:"name"`
	Topic       string `json:"topic"`
	MetricName  string `json:"metricName"`
	TargetType  string `json:"targetType"`
	Target      string `json:"target"`
	TargetMilli int64  `json:"targetMilli"`
}

type ready struct {
	KedaVersion     string        `json:"kedaVersion"`
	Name            string        `json:"name"`
	Namespace       string        `json:"namespace"`
	MinReplicaCount int32         `json:"minReplicaCount"`
	HPAMinReplicas  int32         `json:"hpaMinReplicas"`
	HPAMaxReplicas  int32         `json:"hpaMaxReplicas"`
	ToleranceUp     float64       `json:"toleranceUp"`
	ToleranceDown   float64       `json:"toleranceDown"`
	Triggers        []triggerSpec `json:"triggers"`
}

type triggerPoll struct {
	Index       int    `json:"index"`
	Metric      string `json:"metric"`
	MetricMilli int64  `json:"metricMilli"`
	Active      bool   `json:"active"`
	// What the HPA asks for from this metric alone (null when the trigger failed).
	Replicas *int32 `json:"replicas"`
	Error    string `json:"error,omitempty"`
}

type pollResult struct {
	Triggers []triggerPoll `json:"triggers"`
	Active   bool          `json:"active"`
	Replicas *int32        `json:"replicas"`
	// Which rule settled the count: metric, tolerance, min, max, inactive, error.
	LimitedBy string `json:"limitedBy"`
}

type trigger struct {
	spec   triggerSpec
	scaler scalers.Scaler
}

type tolerances struct{ up, down float64 }

// within is the HPA's test for "close enough, keep the current count": inclusive on both ends,
// as kube-controller-manager's replica calculator has it since Kubernetes 1.33.
func (t tolerances) within(ratio float64) bool {
	return (1.0-t.down) <= ratio && ratio <= (1.0+t.up)
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		emit(os.Stdout, map[string]string{"error": err.Error()})
		os.Exit(1)
	}
}

func run(stdin *os.File, stdout *os.File) error {
	lines := bufio.NewScanner(stdin)
	lines.Buffer(make([]byte, 0, 1<<20), 16<<20)
	if !lines.Scan() {
		return errors.New("expected a request line on stdin: {\"scaledObject\": {...}}")
	}
	var req request
	if err := json.Unmarshal(lines.Bytes(), &req); err != nil {
		return fmt.Errorf("request is not JSON: %w", err)
	}
	logf.SetLogger(logger(req.Verbose))

	so, err := decodeScaledObject(req.ScaledObject)
	if err != nil {
		return err
	}
	ctx := context.Background()
	triggers, err := buildScalers(ctx, so)
	defer func() {
		for _, t := range triggers {
			_ = t.scaler.Close(ctx)
		}
	}()
	if err != nil {
		return err
	}
	tol := tolerancesOf(so)
	info := ready{
		KedaVersion:     kedaVersion(),
		Name:            so.Name,
		Namespace:       so.Namespace,
		MinReplicaCount: minReplicaCount(so),
		HPAMinReplicas:  *so.GetHPAMinReplicas(),
		HPAMaxReplicas:  so.GetHPAMaxReplicas(),
		ToleranceUp:     tol.up,
		ToleranceDown:   tol.down,
	}
	for _, t := range triggers {
		info.Triggers = append(info.Triggers, t.spec)
	}
	emit(stdout, map[string]ready{"ready": info})

	for lines.Scan() {
		if len(bytes.TrimSpace(lines.Bytes())) == 0 {
			continue
		}
		var poll pollRequest
		if err := json.Unmarshal(lines.Bytes(), &poll); err != nil {
			return fmt.Errorf("poll line is not JSON ({\"currentReplicas\": n}): %w", err)
		}
		if poll.CurrentReplicas != nil && *poll.CurrentReplicas < 0 {
			return fmt.Errorf("currentReplicas must be >= 0, got %d", *poll.CurrentReplicas)
		}
		emit(stdout, map[string]pollResult{"poll": pollOnce(ctx, so, triggers, tol, poll.CurrentReplicas)})
	}
	return lines.Err()
}

func logger(verbose bool) logr.Logger {
	if !verbose {
		return logr.Discard()
	}
	return funcr.New(func(prefix, args string) {
		fmt.Fprintln(os.Stderr, prefix, args)
	}, funcr.Options{Verbosity: 1})
}

func emit(out *os.File, value any) {
	line, err := json.Marshal(value)
	if err != nil {
		line = []byte(fmt.Sprintf(`{"error": %q}`, err.Error()))
	}
	fmt.Fprintln(out, string(line))
}

func decodeScaledObject(raw json.RawMessage) (*kedav1alpha1.ScaledObject, error) {
	if len(raw) == 0 {
		return nil, errors.New("request has no scaledObject")
	}
	decoder := json.NewDecoder(bytes.NewReader(raw))
	// A misspelt field would otherwise be dropped silently, as the API server prunes it.
	decoder.DisallowUnknownFields()
	so := &kedav1alpha1.ScaledObject{}
	if err := decoder.Decode(so); err != nil {
		return nil, fmt.Errorf("scaledObject does not decode as a keda.sh/v1alpha1 ScaledObject: %w", err)
	}
	if so.Kind != "ScaledObject" {
		return nil, fmt.Errorf("scaledObject has kind %q; expected ScaledObject", so.Kind)
	}
	if err := kedav1alpha1.ValidateTriggers(so.Spec.Triggers); err != nil {
		return nil, err
	}
	if err := kedav1alpha1.CheckReplicaCountBoundsAreValid(so); err != nil {
		return nil, err
	}
	// Parts of a ScaledObject that change the replica count in ways this check does not follow.
	switch {
	case so.Spec.IdleReplicaCount != nil:
		return nil, errors.New("idleReplicaCount is set; this check does not follow it")
	case so.Spec.Fallback != nil:
		return nil, errors.New("fallback is set; this check does not follow it")
	case so.IsUsingModifiers():
		return nil, errors.New("advanced.scalingModifiers is set; this check does not follow it")
	case so.HasPausedAnnotation():
		return nil, errors.New("the ScaledObject is paused by annotation")
	}
	return so, nil
}

// buildScalers creates one scaler per trigger with the ScalerConfig KEDA's operator would give it.
func buildScalers(ctx context.Context, so *kedav1alpha1.ScaledObject) ([]trigger, error) {
	withTriggers, err := kedav1alpha1.AsDuckWithTriggers(so)
	if err != nil {
		return nil, err
	}
	var built []trigger
	for index, t := range withTriggers.Spec.Triggers {
		if t.Type != "kafka" {
			return built, fmt.Errorf("trigger %d has type %q; this check runs KEDA's kafka scaler only", index, t.Type)
		}
		if t.AuthenticationRef != nil {
			return built, fmt.Errorf("trigger %d has an authenticationRef; this check has no cluster to resolve it", index)
		}
		config := &scalersconfig.ScalerConfig{
			ScalableObjectName:      withTriggers.Name,
			ScalableObjectNamespace: withTriggers.Namespace,
			ScalableObjectType:      withTriggers.Kind,
			TriggerName:             t.Name,
			TriggerMetadata:         t.Metadata,
			TriggerType:             t.Type,
			TriggerUseCachedMetrics: t.UseCachedMetrics,
			ResolvedEnv:             map[string]string{},
			AuthParams:              map[string]string{},
			GlobalHTTPTimeout:       globalHTTPTimeout,
			TriggerIndex:            index,
			MetricType:              t.MetricType,
			ScaledObject:            withTriggers,
			TriggerUniqueKey:        fmt.Sprintf("%s-%s-%s-%d", withTriggers.Kind, withTriggers.Namespace, withTriggers.Name, index),
		}
		scaler, err := scalers.NewKafkaScaler(ctx, config)
		if err != nil {
			return built, fmt.Errorf("trigger %d (topic %q): %w", index, t.Metadata["topic"], err)
		}
		specs := scaler.GetMetricSpecForScaling(ctx)
		if len(specs) != 1 || specs[0].External == nil {
			_ = scaler.Close(ctx)
			return built, fmt.Errorf("trigger %d: expected one external metric spec, got %d", index, len(specs))
		}
		target := specs[0].External.Target
		spec := triggerSpec{
			Index:      index,
			Type:       t.Type,
			Name:       t.Name,
			Topic:      t.Metadata["topic"],
			MetricName: specs[0].External.Metric.Name,
			TargetType: string(target.Type),
		}
		switch target.Type {
		case v2.AverageValueMetricType:
			spec.Target = target.AverageValue.String()
			spec.TargetMilli = target.AverageValue.MilliValue()
		default:
			_ = scaler.Close(ctx)
			return built, fmt.Errorf("trigger %d has metricType %q; this check follows the HPA for AverageValue only", index, target.Type)
		}
		built = append(built, trigger{spec: spec, scaler: scaler})
	}
	return built, nil
}

// pollOnce reads every trigger at once, as KEDA's scale loop does, then decides the count.
func pollOnce(ctx context.Context, so *kedav1alpha1.ScaledObject, triggers []trigger, tol tolerances, current *int32) pollResult {
	polls := make([]triggerPoll, len(triggers))
	var wg sync.WaitGroup
	for i, t := range triggers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			polls[i] = readTrigger(ctx, t)
		}()
	}
	wg.Wait()
	return decide(so, triggers, polls, tol, current)
}

func readTrigger(ctx context.Context, t trigger) triggerPoll {
	poll := triggerPoll{Index: t.spec.Index}
	metrics, active, err := t.scaler.GetMetricsAndActivity(ctx, t.spec.MetricName)
	if err != nil {
		poll.Error = err.Error()
		return poll
	}
	if len(metrics) != 1 {
		poll.Error = fmt.Sprintf("expected one metric value, got %d", len(metrics))
		return poll
	}
	poll.Metric = metrics[0].Value.String()
	poll.MetricMilli = metrics[0].Value.MilliValue()
	poll.Active = active
	return poll
}

// decide applies KEDA's executor and the HPA to one poll.
//
// currentReplicas is the scale target's replica count. nil asks for the HPA's target with no
// current count to be tolerant around: ceil(metric / target) per metric. 0 is what KEDA's
// executor does from zero: an active ScaledObject is scaled to max(minReplicaCount, 1) and the
// HPA then computes from that count. Stabilisation windows and rate policies (behavior) only
// delay the count and are not applied.
func decide(so *kedav1alpha1.ScaledObject, triggers []trigger, polls []triggerPoll, tol tolerances, current *int32) pollResult {
	result := pollResult{Triggers: polls}
	hpaMin, hpaMax := *so.GetHPAMinReplicas(), so.GetHPAMaxReplicas()
	minCount := minReplicaCount(so)
	failed := false
	for _, p := range polls {
		result.Active = result.Active || p.Active
		failed = failed || p.Error != ""
	}
	// The count the HPA computes from: from zero, what KEDA activates to
	// (scaleFromZeroOrIdle: minReplicaCount when above zero, else 1).
	hpaCurrent := current
	if current != nil && *current == 0 {
		activated := max(minCount, 1)
		hpaCurrent = &activated
	}
	// What the HPA asks for from each metric alone, and from all (the largest).
	desired, untolerant := int32(0), int32(0)
	for i := range polls {
		if polls[i].Error != "" {
			continue
		}
		target := triggers[i].spec.TargetMilli
		proposal := hpaReplicas(polls[i].MetricMilli, target, hpaCurrent, tol)
		polls[i].Replicas = &proposal
		desired = max(desired, proposal)
		untolerant = max(untolerant, hpaReplicas(polls[i].MetricMilli, target, nil, tol))
	}

	switch {
	case current != nil && *current == 0 && !result.Active:
		// An inactive ScaledObject stays at zero, or is raised to minReplicaCount.
		if minCount > 0 {
			return settle(result, minCount, "min")
		}
		return settle(result, 0, "inactive")
	case !result.Active && minCount == 0 && !failed:
		// scaleToZeroOrIdle, once cooldownPeriod has passed since the last active poll.
		return settle(result, 0, "inactive")
	case failed:
		// The HPA leaves the count alone when a metric cannot be read and the rest would lower
		// it; this check reports the failure instead of guessing.
		result.LimitedBy = "error"
		return result
	}
	limitedBy := "metric"
	if untolerant != desired {
		limitedBy = "tolerance"
	}
	switch {
	case desired > hpaMax:
		desired, limitedBy = hpaMax, "max"
	case desired < hpaMin:
		desired, limitedBy = hpaMin, "min"
	}
	return settle(result, desired, limitedBy)
}

func settle(result pollResult, replicas int32, limitedBy string) pollResult {
	result.Replicas = &replicas
	result.LimitedBy = limitedBy
	return result
}

// hpaReplicas is the replica count kube-controller-manager's GetExternalPerPodMetricReplicas
// gives for an AverageValue external metric (milli-values, as the HPA reads them): the current
// count while usage / (target x current) is within the tolerance, else ceil(usage / target).
func hpaReplicas(usageMilli, targetMilli int64, current *int32, tol tolerances) int32 {
	if current != nil && *current > 0 {
		ratio := float64(usageMilli) / (float64(targetMilli) * float64(*current))
		if tol.within(ratio) {
			return *current
		}
	}
	wanted := math.Ceil(float64(usageMilli) / float64(targetMilli))
	if wanted > math.MaxInt32 {
		return math.MaxInt32
	}
	return int32(wanted)
}

// minReplicaCount as KEDA's executor reads it: 0 when unset.
func minReplicaCount(so *kedav1alpha1.ScaledObject) int32 {
	if so.Spec.MinReplicaCount != nil {
		return *so.Spec.MinReplicaCount
	}
	return 0
}

func tolerancesOf(so *kedav1alpha1.ScaledObject) tolerances {
	tol := tolerances{up: defaultTolerance, down: defaultTolerance}
	if so.Spec.Advanced == nil || so.Spec.Advanced.HorizontalPodAutoscalerConfig == nil {
		return tol
	}
	behavior := so.Spec.Advanced.HorizontalPodAutoscalerConfig.Behavior
	if behavior == nil {
		return tol
	}
	if behavior.ScaleUp != nil && behavior.ScaleUp.Tolerance != nil {
		tol.up = behavior.ScaleUp.Tolerance.AsApproximateFloat64()
	}
	if behavior.ScaleDown != nil && behavior.ScaleDown.Tolerance != nil {
		tol.down = behavior.ScaleDown.Tolerance.AsApproximateFloat64()
	}
	return tol
}

func kedaVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == kedaModule {
			return dep.Version
		}
	}
	return "unknown"
}
