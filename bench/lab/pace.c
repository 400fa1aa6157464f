// pace: a paced HTTP/1.1 keep-alive load that logs every request, for the reload
// timeline lab (reload-timeline.sh, BENCHMARKS.md). N connections to 127.0.0.1:PORT
// each send GET /small (Host: HOST), wait for the whole response, wait DELAY ms and
// send the next one, as wrk's delay() does in the bench's reload scenario. One line per
// request: "<start, CLOCK_REALTIME µs> <latency µs> <status>", so slow requests can be
// matched to the moments of reloads. Build: cc -O2 -o pace pace.c
// Usage: pace PORT HOST CONNECTIONS SECONDS DELAY_MS OUTFILE
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
typedef struct { int fd; long long sent_mono, sent_real, next; char buf[8192]; int len; int waiting; } Conn;
static long long mono(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec*1000000LL+t.tv_nsec/1000;}
static long long real_(void){struct timespec t;clock_gettime(CLOCK_REALTIME,&t);return t.tv_sec*1000000LL+t.tv_nsec/1000;}
int main(int argc,char**argv){
  if(argc<7){fprintf(stderr,"pace port host conns seconds delay_ms out\n");return 2;}
  int port=atoi(argv[1]); const char*host=argv[2]; int n=atoi(argv[3]); double secs=atof(argv[4]); double delay=atof(argv[5])*1000;
  FILE*out=fopen(argv[6],"w"); char req[512]; int rl=snprintf(req,sizeof req,"GET /small HTTP/1.1\r\nHost: %s\r\n\r\n",host);
  int ep=epoll_create1(0); Conn*c=calloc(n,sizeof(Conn));
  struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(port)}; inet_pton(AF_INET,"127.0.0.1",&a.sin_addr);
  for(int i=0;i<n;i++){c[i].fd=socket(AF_INET,SOCK_STREAM,0); if(connect(c[i].fd,(void*)&a,sizeof a)){perror("connect");return 1;}
    int one=1; setsockopt(c[i].fd,IPPROTO_TCP,TCP_NODELAY,&one,sizeof one); fcntl(c[i].fd,F_SETFL,O_NONBLOCK);
    struct epoll_event e={.events=EPOLLIN,.data.u32=i}; epoll_ctl(ep,EPOLL_CTL_ADD,c[i].fd,&e); c[i].next=mono()+ (long long)(delay*i/n);}
  long long end=mono()+(long long)(secs*1e6); long errors=0,count=0;
  while(1){ long long now=mono(); if(now>=end)break;
    long long wake=end; for(int i=0;i<n;i++){ if(!c[i].waiting){ if(c[i].next<=now){ c[i].sent_mono=mono(); c[i].sent_real=real_();
          if(write(c[i].fd,req,rl)!=rl){errors++;} c[i].waiting=1; c[i].len=0;} else if(c[i].next<wake) wake=c[i].next; } }
    int to=(int)((wake-mono()+999)/1000); if(to<0)to=0;
    struct epoll_event ev[64]; int k=epoll_wait(ep,ev,64,to);
    for(int j=0;j<k;j++){ Conn*x=&c[ev[j].data.u32]; int r=read(x->fd,x->buf+x->len,sizeof x->buf-1-x->len);
      if(r<=0){ if(r<0&&errno==EAGAIN)continue; errors++; fprintf(stderr,"conn closed\n"); return 1;}
      x->len+=r; x->buf[x->len]=0; char*h=strstr(x->buf,"\r\n\r\n"); if(!h)continue;
      char*cl=strcasestr(x->buf,"content-length:"); int body=cl?atoi(cl+15):0; if(x->len < (h+4-x->buf)+body) continue;
      long long t=mono(); int st=atoi(x->buf+9); if(st!=200)errors++;
      fprintf(out,"%lld %lld %d\n",x->sent_real,t-x->sent_mono,st); count++; x->waiting=0; x->len=0; x->next=t+(long long)delay; }
  }
  fclose(out); fprintf(stderr,"requests %ld errors %ld\n",count,errors); return 0; }
