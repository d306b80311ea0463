// Command istio-oracle runs Istio's own admission validation and config analyzers over sets of Kubernetes
// objects, so graylane's tests can check graylane's output and findings against Istio's code.
//
// Input (stdin): {"cases": [{"name": "...", "objects": [<object as JSON>, ...]}, ...]}.
// Output (stdout): {"cases": [{"name": "...", "validation": [...], "analysis": [...]}, ...]}.
//
// Validation follows the admission webhook (pkg/webhooks/validation/server): the object is decoded as an
// IstioKind, converted with the schema found by group and kind, and checked with the schema's ValidateConfig.
// Analysis runs the analyzers that concern the objects graylane reads and writes (VirtualService,
// DestinationRule, Gateway, EnvoyFilter, Service, Pod, Deployment, Namespace) with every object of the case
// loaded, Services, Pods and Namespaces included (istioctl analyze --use-kube=false drops those from files).
// A Deployment stands for its pods: each one adds a Pod built from its template, so the analyzers that look
// at pods (subsets that select no pods) see the workloads.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/hashicorp/go-multierror"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"istio.io/istio/pilot/pkg/config/kube/crd"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config"
	"istio.io/istio/pkg/config/analysis"
	"istio.io/istio/pkg/config/analysis/analyzers/deployment"
	"istio.io/istio/pkg/config/analysis/analyzers/deprecation"
	"istio.io/istio/pkg/config/analysis/analyzers/destinationrule"
	"istio.io/istio/pkg/config/analysis/analyzers/envoyfilter"
	"istio.io/istio/pkg/config/analysis/analyzers/gateway"
	"istio.io/istio/pkg/config/analysis/analyzers/service"
	"istio.io/istio/pkg/config/analysis/analyzers/virtualservice"
	"istio.io/istio/pkg/config/analysis/diag"
	"istio.io/istio/pkg/config/resource"
	"istio.io/istio/pkg/config/schema/collections"
	"istio.io/istio/pkg/config/schema/gvk"
	sresource "istio.io/istio/pkg/config/schema/resource"
)

const domainSuffix = "cluster.local"

type inputCase struct {
	Name    string            `json:"name"`
	Objects []json.RawMessage `json:"objects"`
}

type validationResult struct {
	Object   string   `json:"object"`
	Errors   []string `json:"errors"`
	Warnings []string `json:"warnings"`
}

type analysisMessage struct {
	Code    string `json:"code"`
	Level   string `json:"level"`
	Object  string `json:"object"`
	Message string `json:"message"`
}

type outputCase struct {
	Name       string             `json:"name"`
	Validation []validationResult `json:"validation"`
	Analysis   []analysisMessage  `json:"analysis"`
	Problems   []string           `json:"problems"`
}

// analyzers are the Istio analyzers for the kinds graylane handles (a subset of analyzers.All(), which would pull
// in the injection, webhook and multicluster analyzers and their Kubernetes clients).
func analyzers() []analysis.Analyzer {
	return []analysis.Analyzer{
		&deployment.ServiceAssociationAnalyzer{},
		&deprecation.FieldAnalyzer{},
		&destinationrule.PodNotSelectedAnalyzer{},
		&envoyfilter.EnvoyPatchAnalyzer{},
		&gateway.IngressGatewayPortAnalyzer{},
		&gateway.ConflictingGatewayAnalyzer{},
		&service.PortNameAnalyzer{},
		&virtualservice.ConflictingMeshGatewayHostsAnalyzer{},
		&virtualservice.DestinationHostAnalyzer{},
		&virtualservice.DestinationRuleAnalyzer{},
		&virtualservice.GatewayAnalyzer{},
	}
}

func objectName(kind, namespace, name string) string {
	if namespace == "" {
		return kind + "/" + name
	}
	return kind + "/" + namespace + "/" + name
}

func errorList(err error) []string {
	out := []string{}
	if err == nil {
		return out
	}
	if multi, ok := err.(*multierror.Error); ok {
		for _, e := range multi.WrappedErrors() {
			out = append(out, e.Error())
		}
		return out
	}
	return append(out, err.Error())
}

// validate is the admission webhook's check of one object.
func validate(raw json.RawMessage) (validationResult, *config.Config, sresource.Schema, error) {
	var obj crd.IstioKind
	if err := json.Unmarshal(raw, &obj); err != nil {
		return validationResult{}, nil, nil, fmt.Errorf("cannot decode configuration: %v", err)
	}
	kgvk := obj.GroupVersionKind()
	result := validationResult{Object: objectName(obj.Kind, obj.Namespace, obj.Name), Errors: []string{}, Warnings: []string{}}
	s, exists := collections.Pilot.FindByGroupKind(sresource.FromKubernetesGVK(&kgvk))
	if !exists {
		return result, nil, nil, nil
	}
	if obj.Namespace == "" {
		obj.Namespace = metav1.NamespaceDefault
	}
	result.Object = objectName(obj.Kind, obj.Namespace, obj.Name)
	out, err := crd.ConvertObject(s, &obj, domainSuffix)
	if err != nil {
		result.Errors = append(result.Errors, fmt.Sprintf("error decoding configuration: %v", err))
		return result, nil, s, nil
	}
	warnings, err := s.ValidateConfig(*out)
	result.Errors = errorList(err)
	result.Warnings = errorList(warnings)
	return result, out, s, nil
}

type origin struct {
	name      string
	namespace string
}

func (o origin) FriendlyName() string          { return o.name }
func (o origin) Namespace() resource.Namespace { return resource.Namespace(o.namespace) }
func (o origin) Reference() resource.Reference { return nil }
func (o origin) FieldMap() map[string]int      { return nil }
func (o origin) Comparator() string            { return o.name }
func (o origin) ClusterName() cluster.ID       { return "" }

// store is the analysis.Context over one case's objects.
type store struct {
	byKind   map[config.GroupVersionKind][]*resource.Instance
	messages []analysisMessage
}

func (s *store) add(kind config.GroupVersionKind, inst *resource.Instance) {
	s.byKind[kind] = append(s.byKind[kind], inst)
}

func (s *store) Report(_ config.GroupVersionKind, m diag.Message) {
	object := ""
	if m.Resource != nil && m.Resource.Origin != nil {
		object = m.Resource.Origin.FriendlyName()
	}
	s.messages = append(s.messages, analysisMessage{
		Code:    m.Type.Code(),
		Level:   m.Type.Level().String(),
		Object:  object,
		Message: fmt.Sprintf(m.Type.Template(), m.Parameters...),
	})
}

func (s *store) Find(kind config.GroupVersionKind, name resource.FullName) *resource.Instance {
	for _, inst := range s.byKind[kind] {
		if inst.Metadata.FullName == name {
			return inst
		}
	}
	return nil
}

func (s *store) Exists(kind config.GroupVersionKind, name resource.FullName) bool {
	return s.Find(kind, name) != nil
}

func (s *store) ForEach(kind config.GroupVersionKind, fn analysis.IteratorFn) {
	for _, inst := range s.byKind[kind] {
		if !fn(inst) {
			return
		}
	}
}

func (s *store) Canceled() bool       { return false }
func (s *store) SetAnalyzer(_ string) {}

type kubeObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              json.RawMessage `json:"spec"`
}

func instance(kind config.GroupVersionKind, meta metav1.ObjectMeta, spec config.Spec) *resource.Instance {
	schema, _ := collections.All.FindByGroupVersionAliasesKind(kind)
	name := objectName(kind.Kind, meta.Namespace, meta.Name)
	return &resource.Instance{
		Metadata: resource.Metadata{
			Schema:      schema,
			FullName:    resource.NewFullName(resource.Namespace(meta.Namespace), resource.LocalName(meta.Name)),
			Labels:      meta.Labels,
			Annotations: meta.Annotations,
		},
		Message: spec,
		Origin:  origin{name: name, namespace: meta.Namespace},
	}
}

// loadKube adds the Kubernetes objects the analyzers read; a Deployment also adds a Pod from its template.
func loadKube(s *store, raw json.RawMessage) error {
	var obj kubeObject
	if err := json.Unmarshal(raw, &obj); err != nil {
		return err
	}
	if obj.Namespace == "" && obj.Kind != "Namespace" {
		obj.Namespace = metav1.NamespaceDefault
	}
	spec := []byte(obj.Spec)
	if len(spec) == 0 {
		spec = []byte("{}")
	}
	switch schema.FromAPIVersionAndKind(obj.APIVersion, obj.Kind) {
	case schema.GroupVersionKind{Version: "v1", Kind: "Service"}:
		var v corev1.ServiceSpec
		if err := json.Unmarshal(spec, &v); err != nil {
			return err
		}
		s.add(gvk.Service, instance(gvk.Service, obj.ObjectMeta, &v))
	case schema.GroupVersionKind{Version: "v1", Kind: "Pod"}:
		var v corev1.PodSpec
		if err := json.Unmarshal(spec, &v); err != nil {
			return err
		}
		s.add(gvk.Pod, instance(gvk.Pod, obj.ObjectMeta, &v))
	case schema.GroupVersionKind{Version: "v1", Kind: "Namespace"}:
		var v corev1.NamespaceSpec
		if err := json.Unmarshal(spec, &v); err != nil {
			return err
		}
		s.add(gvk.Namespace, instance(gvk.Namespace, obj.ObjectMeta, &v))
	case schema.GroupVersionKind{Group: "apps", Version: "v1", Kind: "Deployment"}:
		var v appsv1.DeploymentSpec
		if err := json.Unmarshal(spec, &v); err != nil {
			return err
		}
		s.add(gvk.Deployment, instance(gvk.Deployment, obj.ObjectMeta, &v))
		pod := v.Template.ObjectMeta
		pod.Name = obj.Name + "-pod"
		pod.Namespace = obj.Namespace
		s.add(gvk.Pod, instance(gvk.Pod, pod, &v.Template.Spec))
	}
	return nil
}

func run(c inputCase) outputCase {
	out := outputCase{Name: c.Name, Validation: []validationResult{}, Analysis: []analysisMessage{}, Problems: []string{}}
	s := &store{byKind: map[config.GroupVersionKind][]*resource.Instance{}}
	for _, raw := range c.Objects {
		result, cfg, schema, err := validate(raw)
		if err != nil {
			out.Problems = append(out.Problems, err.Error())
			continue
		}
		if schema == nil {
			if err := loadKube(s, raw); err != nil {
				out.Problems = append(out.Problems, fmt.Sprintf("%s: %v", result.Object, err))
			}
			continue
		}
		out.Validation = append(out.Validation, result)
		if cfg != nil {
			kind := schema.GroupVersionKind()
			inst := instance(kind, metav1.ObjectMeta{Name: cfg.Name, Namespace: cfg.Namespace, Labels: cfg.Labels,
				Annotations: cfg.Annotations}, cfg.Spec)
			inst.Origin = origin{name: result.Object, namespace: cfg.Namespace}
			s.add(kind, inst)
		}
	}
	for _, a := range analyzers() {
		a.Analyze(s)
	}
	sort.SliceStable(s.messages, func(i, j int) bool {
		a, b := s.messages[i], s.messages[j]
		return strings.Join([]string{a.Object, a.Code, a.Message}, "\x00") <
			strings.Join([]string{b.Object, b.Code, b.Message}, "\x00")
	})
	out.Analysis = append(out.Analysis, s.messages...)
	return out
}

func main() {
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "istio-oracle: reading stdin:", err)
		os.Exit(2)
	}
	var input struct {
		Cases []inputCase `json:"cases"`
	}
	if err := json.Unmarshal(data, &input); err != nil {
		fmt.Fprintln(os.Stderr, "istio-oracle: input is not {\"cases\": [...]}:", err)
		os.Exit(2)
	}
	output := struct {
		Cases []outputCase `json:"cases"`
	}{Cases: []outputCase{}}
	for _, c := range input.Cases {
		output.Cases = append(output.Cases, run(c))
	}
	enc := json.NewEncoder(os.Stdout)
	if err := enc.Encode(output); err != nil {
		fmt.Fprintln(os.Stderr, "istio-oracle: writing output:", err)
		os.Exit(2)
	}
}
