// Command argo-peer runs Argo Rollouts' own Istio traffic-routing reconciler
// (rollout/trafficrouting/istio) step by step against a fake dynamic client,
// so graylane's Argo rendering can be compared with Argo's code.
//
// stdin:  {"cases": [{"id", "rollout", "objects": [VS/DR...], "canaryHash", "stableHash"}]}
// stdout: {"results": [{"id", "steps": [{"step", "weight", "objects"}], "error", "errorStep"}]}
//
// For step N (1-based) the program does what Argo's rollout controller does
// while the rollout sits at step index N-1 with a ready canary: SetHeaderRoute /
// SetMirrorRoute of that step, UpdateHash, then SetWeight with Argo's
// GetCurrentSetWeight. Objects are snapshotted after every step.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	dynamicfake "k8s.io/client-go/dynamic/fake"

	"github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1"
	"github.com/argoproj/argo-rollouts/rollout/trafficrouting/istio"
	istioutil "github.com/argoproj/argo-rollouts/utils/istio"
	"github.com/argoproj/argo-rollouts/utils/record"
	replicasetutil "github.com/argoproj/argo-rollouts/utils/replicaset"
	log "github.com/sirupsen/logrus"
)

type peerCase struct {
	ID         string           `json:"id"`
	Rollout    json.RawMessage  `json:"rollout"`
	Objects    []map[string]any `json:"objects"`
	CanaryHash string           `json:"canaryHash"`
	StableHash string           `json:"stableHash"`
}

type stepResult struct {
	Step    int              `json:"step"`
	Weight  int32            `json:"weight"`
	Objects []map[string]any `json:"objects"`
}

type caseResult struct {
	ID        string       `json:"id"`
	Steps     []stepResult `json:"steps"`
	Error     string       `json:"error,omitempty"`
	ErrorStep int          `json:"errorStep,omitempty"`
}

func main() {
	log.SetLevel(log.PanicLevel)
	log.SetOutput(io.Discard)
	var input struct {
		Cases []peerCase `json:"cases"`
	}
	if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
		fmt.Fprintln(os.Stderr, "argo-peer: bad input:", err)
		os.Exit(2)
	}
	results := make([]caseResult, 0, len(input.Cases))
	for _, c := range input.Cases {
		results = append(results, runCase(c))
	}
	out := json.NewEncoder(os.Stdout)
	if err := out.Encode(map[string]any{"results": results}); err != nil {
		fmt.Fprintln(os.Stderr, "argo-peer:", err)
		os.Exit(2)
	}
}

func runCase(c peerCase) (result caseResult) {
	result = caseResult{ID: c.ID, Steps: []stepResult{}}
	step := 0
	defer func() {
		if p := recover(); p != nil {
			result.Error = fmt.Sprintf("panic: %v", p)
			result.ErrorStep = step
		}
	}()
	var ro v1alpha1.Rollout
	if err := json.Unmarshal(c.Rollout, &ro); err != nil {
		result.Error = "rollout: " + err.Error()
		return
	}
	vsGVR := istioutil.GetIstioVirtualServiceGVR()
	drGVR := istioutil.GetIstioDestinationRuleGVR()
	objs := []runtime.Object{}
	for _, o := range c.Objects {
		u := &unstructured.Unstructured{Object: o}
		u.SetAPIVersion(vsGVR.GroupVersion().String())
		objs = append(objs, u)
	}
	scheme := runtime.NewScheme()
	client := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(scheme, map[schema.GroupVersionResource]string{
		vsGVR: "VirtualServiceList",
		drGVR: "DestinationRuleList",
	}, objs...)
	r := istio.NewReconciler(&ro, client, record.NewFakeEventRecorder(), nil, nil, nil)
	steps := ro.Spec.Strategy.Canary.Steps
	for i := range steps {
		step = i + 1
		idx := int32(i)
		ro.Status.CurrentStepIndex = &idx
		current := &steps[i]
		var err error
		if current.SetHeaderRoute != nil {
			err = r.SetHeaderRoute(current.SetHeaderRoute)
		}
		if err == nil && current.SetMirrorRoute != nil {
			err = r.SetMirrorRoute(current.SetMirrorRoute)
		}
		if err == nil {
			err = r.UpdateHash(c.CanaryHash, c.StableHash)
		}
		weight := replicasetutil.GetCurrentSetWeight(&ro)
		if err == nil {
			err = r.SetWeight(weight)
		}
		if err != nil {
			result.Error = err.Error()
			result.ErrorStep = step
			return
		}
		snapshot, err := listObjects(client, vsGVR, drGVR)
		if err != nil {
			result.Error = err.Error()
			result.ErrorStep = step
			return
		}
		result.Steps = append(result.Steps, stepResult{Step: step, Weight: weight, Objects: snapshot})
	}
	return
}

func listObjects(client *dynamicfake.FakeDynamicClient, gvrs ...schema.GroupVersionResource) ([]map[string]any, error) {
	out := []map[string]any{}
	for _, gvr := range gvrs {
		list, err := client.Resource(gvr).List(context.TODO(), metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		items := list.Items
		sort.Slice(items, func(a, b int) bool {
			return items[a].GetNamespace()+"/"+items[a].GetName() < items[b].GetNamespace()+"/"+items[b].GetName()
		})
		for _, item := range items {
			out = append(out, item.Object)
		}
	}
	return out, nil
}
