// Command kruise-peer runs OpenKruise Rollouts' own custom network provider on cases read from stdin, so
// graylane's tests can compare their output with Kruise's (parity) and time Kruise's Go path (benchmark).
//
// Input (stdin, one JSON object):
//
//	{"mode": "ensure" | "time", "iterations": N, "cases": [CASE, ...]}
//
// CASE: {"id": "...", "object": {network object}, and one of
//
//	"trafficRouting": {rollouts.kruise.io/v1alpha1 TrafficRouting},
//	"rollout": {rollouts.kruise.io/v1beta1 or v1alpha1 Rollout}, "step": N (1-based, default 1)}
//	"script": "..." (optional: the Lua used when Kruise ships none for the object's group/Kind; it is
//	            served from the kruise-rollout-configuration ConfigMap as Kruise reads it)
//	"configMap": {key: value} (optional, instead of "script": the ConfigMap's data exactly as given, so a
//	            test sees which key Kruise's own lookup finds)
//
// Mode "ensure" runs the provider's EnsureRoutes against a controller-runtime fake client holding the
// object (storing the original, running the script in a fresh Lua state, updating the object) and returns
// the object as the API server would then hold it. Mode "time" repeats Kruise's per-reconcile Lua path
// (decode the stored original, build obj, new gopher-lua state, parse, run, encode, decode) "iterations"
// times per case and returns the mean nanoseconds per call and the last result.
//
// Kruise reads its shipped scripts from ./lua_configuration at start-up: run this program with the
// working directory set to the github.com/openkruise/rollouts module directory to use them.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/openkruise/rollouts/api/v1alpha1"
	"github.com/openkruise/rollouts/api/v1beta1"
	custom "github.com/openkruise/rollouts/pkg/trafficrouting/network/customNetworkProvider"
	"github.com/openkruise/rollouts/pkg/util"
	"github.com/openkruise/rollouts/pkg/util/configuration"
	"github.com/openkruise/rollouts/pkg/util/luamanager"
	lua "github.com/yuin/gopher-lua"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	utilpointer "k8s.io/utils/pointer"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

type request struct {
	Mode       string     `json:"mode"`
	Iterations int        `json:"iterations"`
	Cases      []peerCase `json:"cases"`
}

type peerCase struct {
	ID             string                 `json:"id"`
	Object         map[string]interface{} `json:"object"`
	TrafficRouting json.RawMessage        `json:"trafficRouting,omitempty"`
	Rollout        json.RawMessage        `json:"rollout,omitempty"`
	Step           int                    `json:"step,omitempty"`
	Script         string                 `json:"script,omitempty"`
	ConfigMap      map[string]string      `json:"configMap,omitempty"`
}

type result struct {
	ID string `json:"id"`
	// Routed is false when Kruise does not run the provider for this strategy (no traffic, no matches).
	Routed     bool                   `json:"routed"`
	Object     map[string]interface{} `json:"object,omitempty"`
	Error      string                 `json:"error,omitempty"`
	NsPerCall  float64                `json:"nsPerCall,omitempty"`
	Iterations int                    `json:"iterations,omitempty"`
}

// routing is what Kruise's TrafficRoutingContext carries to the custom provider.
type routing struct {
	strategy      v1beta1.TrafficRoutingStrategy
	stableService string
	canaryService string
}

func main() {
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "kruise-peer: reading stdin: %v\n", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(req.Cases))
	for _, c := range req.Cases {
		var r result
		switch req.Mode {
		case "ensure", "":
			r = ensure(c)
		case "time":
			r = timeCase(c, req.Iterations)
		default:
			fmt.Fprintf(os.Stderr, "kruise-peer: unknown mode %q\n", req.Mode)
			os.Exit(2)
		}
		r.ID = c.ID
		results = append(results, r)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	if err := out.Encode(map[string]interface{}{"results": results}); err != nil {
		fmt.Fprintf(os.Stderr, "kruise-peer: writing stdout: %v\n", err)
		os.Exit(2)
	}
}

// routingOf builds the strategy and services exactly as Kruise's TrafficRouting and Rollout controllers do.
func routingOf(c peerCase) (routing, error) {
	if len(c.TrafficRouting) > 0 {
		var tr v1alpha1.TrafficRouting
		if err := json.Unmarshal(c.TrafficRouting, &tr); err != nil {
			return routing{}, err
		}
		if len(tr.Spec.ObjectRef) == 0 {
			return routing{}, fmt.Errorf("trafficRouting has no objectRef")
		}
		// OnlyTrafficRouting: the canary service is the stable service.
		service := tr.Spec.ObjectRef[0].Service
		return routing{v1alpha1.ConversionToV1beta1TrafficRoutingStrategy(tr.Spec.Strategy), service, service}, nil
	}
	if len(c.Rollout) == 0 {
		return routing{}, fmt.Errorf("a case needs trafficRouting or rollout")
	}
	var rollout v1beta1.Rollout
	var meta metav1.TypeMeta
	if err := json.Unmarshal(c.Rollout, &meta); err != nil {
		return routing{}, err
	}
	if meta.APIVersion == v1alpha1.GroupVersion.String() {
		var old v1alpha1.Rollout
		if err := json.Unmarshal(c.Rollout, &old); err != nil {
			return routing{}, err
		}
		if err := old.ConvertTo(&rollout); err != nil {
			return routing{}, err
		}
	} else if err := json.Unmarshal(c.Rollout, &rollout); err != nil {
		return routing{}, err
	}
	steps := rollout.Spec.Strategy.GetSteps()
	refs := rollout.Spec.Strategy.GetTrafficRouting()
	step := c.Step
	if step == 0 {
		step = 1
	}
	if step < 1 || step > len(steps) || len(refs) == 0 {
		return routing{}, fmt.Errorf("rollout has %d steps and %d trafficRoutings; step %d asked", len(steps), len(refs), step)
	}
	stable := refs[0].Service
	canary := stable + "-canary"
	if rollout.Spec.Strategy.DisableGenerateCanaryService() {
		canary = stable
	}
	return routing{steps[step-1].TrafficRoutingStrategy, stable, canary}, nil
}

// routes reports whether Kruise's traffic-routing manager calls the providers for this strategy at all.
func routes(s v1beta1.TrafficRoutingStrategy) bool {
	return s.Traffic != nil || len(s.Matches) > 0
}

const namespace = "default"

func ensure(c peerCase) result {
	rt, err := routingOf(c)
	if err != nil {
		return result{Error: err.Error()}
	}
	if !routes(rt.strategy) {
		return result{Routed: false, Object: c.Object}
	}
	obj := (&unstructured.Unstructured{Object: c.Object}).DeepCopy()
	obj.SetNamespace(namespace)
	scheme := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(scheme)
	builder := fake.NewClientBuilder().WithScheme(scheme).WithObjects(obj.DeepCopy())
	gv := strings.Split(obj.GetAPIVersion(), "/")[0]
	data := c.ConfigMap
	if c.Script != "" {
		data = map[string]string{
			fmt.Sprintf("%s.%s.%s", configuration.LuaTrafficRoutingCustomTypePrefix, obj.GetKind(), gv): c.Script,
		}
	}
	if data != nil {
		builder = builder.WithObjects(&corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Namespace: util.GetRolloutNamespace(), Name: custom.LuaConfigMap},
			Data:       data,
		})
	}
	cli := builder.Build()
	provider, err := custom.NewCustomController(cli, custom.Config{
		Key:           "peer",
		RolloutNs:     namespace,
		CanaryService: rt.canaryService,
		StableService: rt.stableService,
		TrafficConf:   []v1beta1.ObjectRef{{APIVersion: obj.GetAPIVersion(), Kind: obj.GetKind(), Name: obj.GetName()}},
	})
	if err != nil {
		return result{Error: err.Error()}
	}
	if _, err := provider.EnsureRoutes(context.TODO(), &rt.strategy); err != nil {
		return result{Routed: true, Error: err.Error()}
	}
	got := &unstructured.Unstructured{}
	got.SetAPIVersion(obj.GetAPIVersion())
	got.SetKind(obj.GetKind())
	if err := cli.Get(context.TODO(), types.NamespacedName{Namespace: namespace, Name: obj.GetName()}, got); err != nil {
		return result{Routed: true, Error: err.Error()}
	}
	unstructured.RemoveNestedField(got.Object, "metadata", "resourceVersion")
	return result{Routed: true, Object: got.Object}
}

// timeCase repeats the provider's per-reconcile Lua path: EnsureRoutes decodes the stored original
// (json.Unmarshal into custom.Data), then executeLuaForCanary builds custom.LuaData, converts it with
// runtime.DefaultUnstructuredConverter, runs luamanager.RunLuaScript (a new gopher-lua state, libraries
// opened, the script parsed and run) and turns the returned table back into custom.Data via
// luamanager.Encode and json.Unmarshal. executeLuaForCanary is unexported, so its steps are repeated here
// with the same exported Kruise types and functions, in the same order.
func timeCase(c peerCase, iterations int) result {
	rt, err := routingOf(c)
	if err != nil {
		return result{Error: err.Error()}
	}
	obj := &unstructured.Unstructured{Object: c.Object}
	script := util.GetLuaConfigurationContent(fmt.Sprintf("lua_configuration/%s/%s/trafficRouting.lua",
		strings.Split(obj.GetAPIVersion(), "/")[0], obj.GetKind()))
	if script == "" {
		script = c.Script
	}
	if script == "" {
		return result{Error: "no script: Kruise ships none for this kind and the case gives none"}
	}
	annotations := obj.GetAnnotations()
	delete(annotations, custom.OriginalSpecAnnotation)
	stored := util.DumpJSON(custom.Data{Spec: obj.Object["spec"], Labels: obj.GetLabels(), Annotations: annotations})
	if iterations < 1 {
		iterations = 1
	}
	var last custom.Data
	start := time.Now()
	for i := 0; i < iterations; i++ {
		var original custom.Data
		_ = json.Unmarshal([]byte(stored), &original)
		last, err = executeLuaForCanary(original, &rt, script)
		if err != nil {
			return result{Routed: true, Error: err.Error()}
		}
	}
	elapsed := time.Since(start)
	var out map[string]interface{}
	raw, _ := json.Marshal(last)
	_ = json.Unmarshal(raw, &out)
	return result{Routed: true, Object: out, NsPerCall: float64(elapsed.Nanoseconds()) / float64(iterations),
		Iterations: iterations}
}

func executeLuaForCanary(spec custom.Data, rt *routing, script string) (custom.Data, error) {
	var weight *int32
	if rt.strategy.Traffic != nil {
		is := intstr.FromString(*rt.strategy.Traffic)
		weightInt, _ := intstr.GetScaledValueFromIntOrPercent(&is, 100, true)
		weight = utilpointer.Int32(int32(weightInt))
	}
	if weight == nil {
		weight = utilpointer.Int32(-1)
	}
	data := &custom.LuaData{
		Data:                  spec,
		CanaryWeight:          *weight,
		StableWeight:          100 - *weight,
		Matches:               rt.strategy.Matches,
		CanaryService:         rt.canaryService,
		StableService:         rt.stableService,
		RequestHeaderModifier: rt.strategy.RequestHeaderModifier,
	}
	unObj, err := runtime.DefaultUnstructuredConverter.ToUnstructured(data)
	if err != nil {
		return custom.Data{}, err
	}
	l, err := (&luamanager.LuaManager{}).RunLuaScript(&unstructured.Unstructured{Object: unObj}, script)
	if err != nil {
		return custom.Data{}, err
	}
	returnValue := l.Get(-1)
	if returnValue.Type() != lua.LTTable {
		return custom.Data{}, fmt.Errorf("expect table output from Lua script, not %s", returnValue.Type().String())
	}
	jsonBytes, err := luamanager.Encode(returnValue)
	if err != nil {
		return custom.Data{}, err
	}
	var out custom.Data
	err = json.Unmarshal(jsonBytes, &out)
	return out, err
}
